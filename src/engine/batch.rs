//! `serial`: splitting a play's hosts into rolling batches.

use crate::playbook::BatchSize;

/// Sizes of the batches for `total` hosts. An empty `serial` is one batch of everything;
/// the last size given repeats until every host is placed (as Ansible does). A percentage
/// rounds down but never below one host.
pub fn batch_sizes(total: usize, serial: &[BatchSize]) -> Vec<usize> {
    if total == 0 {
        return Vec::new();
    }
    if serial.is_empty() {
        return vec![total];
    }
    let mut sizes = Vec::new();
    let mut placed = 0;
    let mut i = 0;
    while placed < total {
        let spec = serial[i.min(serial.len() - 1)];
        let size = match spec {
            BatchSize::Count(n) => n.max(1),
            BatchSize::Percent(p) => {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                let n = ((total as f64) * p / 100.0).floor() as usize;
                n.max(1)
            }
        };
        let size = size.min(total - placed);
        sizes.push(size);
        placed += size;
        i += 1;
    }
    sizes
}

/// Whether `failed` of `total` hosts exceeds `max_fail_percentage` (Ansible: strictly more).
pub fn over_threshold(failed: usize, total: usize, max_fail_percentage: f64) -> bool {
    if total == 0 || failed == 0 {
        return false;
    }
    #[allow(clippy::cast_precision_loss)]
    let pct = failed as f64 * 100.0 / total as f64;
    pct > max_fail_percentage
}

#[cfg(test)]
mod tests {
    use super::*;
    use BatchSize::{Count, Percent};

    #[test]
    fn batches() {
        assert_eq!(batch_sizes(5, &[]), [5]);
        assert_eq!(batch_sizes(3, &[Count(1)]), [1, 1, 1]);
        assert_eq!(batch_sizes(10, &[Percent(30.0)]), [3, 3, 3, 1]);
        assert_eq!(batch_sizes(10, &[Count(1), Percent(50.0)]), [1, 5, 4]);
        assert_eq!(batch_sizes(2, &[Percent(10.0)]), [1, 1]);
        assert_eq!(batch_sizes(4, &[Count(10)]), [4]);
        assert_eq!(batch_sizes(0, &[Count(1)]), Vec::<usize>::new());
    }

    #[test]
    fn thresholds() {
        assert!(!over_threshold(0, 3, 0.0));
        assert!(over_threshold(1, 3, 0.0));
        assert!(!over_threshold(1, 4, 25.0));
        assert!(over_threshold(2, 4, 25.0));
    }
}
