//! Bounded capture of a command's stdout or stderr: at most `limit` bytes are kept per
//! record, the rest is counted and dropped, so that a command printing 200 MB costs the
//! controller a few MiB of memory.
//!
//! A step script's output is made of records, one per step, each ending with the script's
//! mark line (see `engine::script`). The limit applies to each record, and the mark lines are
//! always kept, even in the middle of dropped output, so that every step is still found.

/// Output that was dropped: `dropped` bytes would have been at byte `at` of what was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub at: usize,
    pub dropped: u64,
}

/// A mark line is kept whole up to this length; what follows counts as output.
const MARK_LINE_MAX: usize = 4096;

pub(crate) struct Capture {
    kept: Vec<u8>,
    cuts: Vec<Cut>,
    limit: usize,
    mark: Option<Vec<u8>>,
    /// Bytes of the current record kept so far.
    record_kept: usize,
    /// Bytes of the current record dropped so far.
    record_dropped: u64,
    /// The end of the last chunk, which may be the start of a mark.
    pending: Vec<u8>,
    /// After a mark, the rest of its line (kept, up to [`MARK_LINE_MAX`]).
    mark_line_left: Option<usize>,
}

impl Capture {
    /// `mark` must start with a newline (a mark is a line of its own) and be non-empty.
    pub(crate) fn new(limit: usize, mark: Option<&[u8]>) -> Capture {
        Capture {
            kept: Vec::new(),
            cuts: Vec::new(),
            limit,
            mark: mark.filter(|m| m.len() > 1).map(<[u8]>::to_vec),
            record_kept: 0,
            record_dropped: 0,
            pending: Vec::new(),
            mark_line_left: None,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let Some(mark) = self.mark.take() else {
            self.take(chunk);
            return;
        };
        let joined;
        let mut data: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            let mut v = std::mem::take(&mut self.pending);
            v.extend_from_slice(chunk);
            joined = v;
            &joined
        };
        loop {
            if let Some(left) = self.mark_line_left {
                let line_end = data.iter().position(|&b| b == b'\n');
                let n = line_end.map_or(data.len(), |p| p + 1).min(left);
                self.kept.extend_from_slice(&data[..n]);
                data = &data[n..];
                self.mark_line_left = match line_end {
                    Some(p) if p < n => None,
                    _ if n == left => None,
                    _ => Some(left - n),
                };
                if self.mark_line_left.is_some() {
                    break;
                }
            }
            match find(data, &mark) {
                Some(pos) => {
                    self.take(&data[..pos]);
                    self.end_record();
                    self.kept.extend_from_slice(&mark);
                    self.mark_line_left = Some(MARK_LINE_MAX);
                    data = &data[pos + mark.len()..];
                }
                None => {
                    let hold = partial_mark_at_end(data, &mark);
                    self.take(&data[..hold]);
                    self.pending = data[hold..].to_vec();
                    break;
                }
            }
        }
        self.mark = Some(mark);
    }

    /// All output has arrived: what was kept, and where it was cut.
    pub(crate) fn finish(mut self) -> (Vec<u8>, Vec<Cut>) {
        let pending = std::mem::take(&mut self.pending);
        self.take(&pending);
        self.end_record();
        (self.kept, self.cuts)
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.record_kept);
        let keep = room.min(bytes.len());
        self.kept.extend_from_slice(&bytes[..keep]);
        self.record_kept += keep;
        self.record_dropped += (bytes.len() - keep) as u64;
    }

    fn end_record(&mut self) {
        if self.record_dropped > 0 {
            self.cuts.push(Cut {
                at: self.kept.len(),
                dropped: self.record_dropped,
            });
        }
        self.record_kept = 0;
        self.record_dropped = 0;
    }
}

/// Where `mark` first occurs in `hay`.
fn find(hay: &[u8], mark: &[u8]) -> Option<usize> {
    let first = mark[0];
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == first) {
        let at = from + p;
        if hay[at..].starts_with(mark) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where the longest tail of `data` that is a proper prefix of `mark` starts (else `data.len()`).
fn partial_mark_at_end(data: &[u8], mark: &[u8]) -> usize {
    let window = data.len().saturating_sub(mark.len() - 1);
    (window..data.len())
        .find(|&i| data[i] == mark[0] && mark.starts_with(&data[i..]))
        .unwrap_or(data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(limit: usize, mark: Option<&[u8]>, chunks: &[&[u8]]) -> (Vec<u8>, Vec<Cut>) {
        let mut c = Capture::new(limit, mark);
        for chunk in chunks {
            c.push(chunk);
        }
        c.finish()
    }

    #[test]
    fn without_a_mark_the_first_bytes_are_kept_and_the_rest_counted() {
        let (kept, cuts) = capture(5, None, &[b"abc", b"defgh", b"ij"]);
        assert_eq!(kept, b"abcde");
        assert_eq!(cuts, vec![Cut { at: 5, dropped: 5 }]);
        let (kept, cuts) = capture(5, None, &[b"abc"]);
        assert_eq!((kept.as_slice(), cuts.len()), (&b"abc"[..], 0));
    }

    #[test]
    fn each_record_has_its_own_limit_and_marks_survive_dropped_output() {
        let mark: &[u8] = b"\n__M ";
        let stream = b"0123456789\n__M 0 ran 0\nab\n__M 1 ran 0\n".to_vec();
        // Every split of the stream into two chunks gives the same result.
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            let (kept, cuts) = capture(4, Some(mark), &[a, b]);
            assert_eq!(
                String::from_utf8_lossy(&kept),
                "0123\n__M 0 ran 0\nab\n__M 1 ran 0\n",
                "split at {split}"
            );
            assert_eq!(cuts, vec![Cut { at: 4, dropped: 6 }], "split at {split}");
        }
    }

    #[test]
    fn a_partial_mark_at_the_end_is_output() {
        let (kept, cuts) = capture(100, Some(b"\n__M "), &[b"x\n__", b"y"]);
        assert_eq!(kept, b"x\n__y");
        assert!(cuts.is_empty());
        let (kept, _) = capture(100, Some(b"\n__M "), &[b"x\n__"]);
        assert_eq!(kept, b"x\n__");
    }

    #[test]
    fn a_flood_is_bounded() {
        let chunk = vec![b'y'; 32 * 1024];
        let mut c = Capture::new(1024 * 1024, Some(b"\n__M "));
        for _ in 0..(200 * 32) {
            c.push(&chunk);
        }
        c.push(b"\n__M 0 ran 0\n");
        let (kept, cuts) = c.finish();
        assert_eq!(kept.len(), 1024 * 1024 + b"\n__M 0 ran 0\n".len());
        assert_eq!(cuts[0].dropped, 200 * 1024 * 1024 - 1024 * 1024);
    }
}
