//! The recommended sequence of supported hops from the running version to a target.
//!
//! The planner walks the seed's rules forward, one stop at a time:
//! - within a major it steps minor by minor ("when upgrading between minor versions, you
//!   cannot skip versions"), stopping at the latest available patch of each intermediate
//!   minor, and lands exactly on the target;
//! - before a major hop it first reaches the latest available release of the current major
//!   ("it is strongly recommended that you first upgrade to the latest minor/patch version
//!   for your major version"), then hops to the `.0` minor of the next major ("upgrade to the
//!   earliest available minor version"), one major at a time.
//!
//! Intermediate stops take the latest patch of their minor: the seed says "no data migration
//! is performed for patch versions", so a later patch costs nothing and carries more fixes.
//! They prefer released versions; a pre-release (only with `--allow-prerelease`) is a stop
//! only when its minor has no release at all, and never counts as the "latest" release of a
//! major. Where the recommended route is blocked by a missing version, the plan is refused
//! rather than cut short: a list with holes in it is not a list to upgrade a registry by.
//!
//! Every hop the planner emits is judged again by [`judge`]; a hop that is not allowed is
//! never returned.

use std::fmt;

use semver::Version;
use thiserror::Error;

use super::upgrade::{JudgeOptions, Refusal, Row, Rule, Verdict, is_release, judge};

/// One supported hop, as the "Upgrade DTR" table classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeHop {
    pub from: Version,
    pub to: Version,
    pub row: Row,
}

impl fmt::Display for UpgradeHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)
    }
}

/// The hops from `from` to `to`, in order; empty when already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradePlan {
    pub from: Version,
    pub to: Version,
    pub hops: Vec<UpgradeHop>,
    /// Things the operator should know before running the plan.
    pub warnings: Vec<String>,
}

/// Why no plan exists.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// A rule forbids the move outright (a downgrade, a pre-release, or a single hop without
    /// a list of available versions to route through).
    #[error("{0}")]
    Refused(Refusal),
    /// The route needs a version the available list lacks.
    #[error("{refusal}; no {needed} release is among the available versions")]
    MissingVersion { refusal: Refusal, needed: String },
    #[error(
        "refused: target `{target}` is not among the available versions ({}); choose one of them",
        join(available)
    )]
    TargetNotAvailable {
        target: Version,
        available: Vec<Version>,
    },
}

impl PlanError {
    /// The table row that blocks the plan, when one does.
    pub fn row(&self) -> Option<Row> {
        match self {
            PlanError::Refused(refusal) | PlanError::MissingVersion { refusal, .. } => {
                refusal.row()
            }
            PlanError::TargetNotAvailable { .. } => None,
        }
    }
}

fn join(versions: &[Version]) -> String {
    let names: Vec<String> = versions.iter().map(Version::to_string).collect();
    names.join(", ")
}

/// The cluster's version for planning: the lowest any replica reports.
///
/// Replicas disagree mid-upgrade (the seed replaces "one replica at a time"); the cluster is
/// only as far along as its slowest replica, so planning starts there. `None` when empty.
pub fn cluster_version(versions: &[Version]) -> Option<Version> {
    versions.iter().min().cloned()
}

/// Plans `current` → `target` through `available` (the versions that exist to upgrade to).
///
/// An empty `available` means "no list": the plan is the single hop `current` → `target`
/// when the table allows it, and its refusal otherwise.
pub fn plan(
    current: &Version,
    target: &Version,
    available: &[Version],
    opts: &JudgeOptions,
) -> Result<UpgradePlan, PlanError> {
    let mut plan = UpgradePlan {
        from: current.clone(),
        to: target.clone(),
        hops: Vec::new(),
        warnings: Vec::new(),
    };
    match judge(current, target, opts) {
        Verdict::NoOp => return Ok(plan),
        Verdict::Refused(refusal) if available.is_empty() || !routable(&refusal) => {
            return Err(PlanError::Refused(refusal));
        }
        Verdict::Allowed { row } if available.is_empty() => {
            if row == Row::MajorUpgrade {
                plan.warnings.push(format!(
                    "no list of available versions: cannot check that {current} is the latest \
                     {}.x release; \"it is strongly recommended that you first upgrade to the \
                     latest minor/patch version for your major version\" (DTR upgrade rules)",
                    current.major
                ));
            }
            plan.push(current.clone(), target.clone(), row);
            return Ok(plan);
        }
        Verdict::Allowed { .. } | Verdict::Refused(_) => {}
    }
    if !available.contains(target) {
        let mut available = available.to_vec();
        available.sort();
        available.dedup();
        return Err(PlanError::TargetNotAvailable {
            target: target.clone(),
            available,
        });
    }
    let pool: Vec<&Version> = available
        .iter()
        .filter(|v| opts.allow_prerelease || is_release(v))
        .collect();
    let mut cur = current.clone();
    while cur != *target {
        let next = next_stop(&cur, target, &pool)?;
        match judge(&cur, &next, opts) {
            Verdict::Allowed { row } => plan.push(cur, next.clone(), row),
            Verdict::Refused(refusal) => return Err(PlanError::Refused(refusal)),
            // Unreachable by construction; refusing beats looping forever.
            Verdict::NoOp => {
                return Err(PlanError::Refused(Refusal {
                    rule: Rule::BuildMetadataOnly,
                    from: cur,
                    to: next,
                }));
            }
        }
        cur = next;
    }
    Ok(plan)
}

impl UpgradePlan {
    fn push(&mut self, from: Version, to: Version, row: Row) {
        if from.major == 2 && from.minor == 5 && to.major == 2 && to.minor == 6 {
            self.warnings.push(format!(
                "{from} -> {to} runs the `metadatastoremigration` job after the upgrade: garbage \
                 collection is disabled while it runs, and if its three attempts fail it must be \
                 retriggered with `POST /api/v0/jobs` (DTR upgrade rules)"
            ));
        }
        self.hops.push(UpgradeHop { from, to, row });
    }
}

/// Refusals a route through intermediate versions can get around.
fn routable(refusal: &Refusal) -> bool {
    matches!(
        refusal.rule,
        Rule::Table(
            Row::SkipMinorVersion | Row::SkipMajorVersion | Row::MajorUpgradeSkippingMinorVersion
        )
    )
}

/// The next stop from `cur` (below `target`, not a downgrade) on the recommended route.
fn next_stop(cur: &Version, target: &Version, pool: &[&Version]) -> Result<Version, PlanError> {
    if cur.major == target.major {
        return step_within_major(cur, target, pool);
    }
    let latest_of_major = pool
        .iter()
        .filter(|v| v.major == cur.major && is_release(v) && **v > cur)
        .max();
    if let Some(latest) = latest_of_major {
        return step_within_major(cur, latest, pool);
    }
    let next_major = cur.major.saturating_add(1);
    if target.major == next_major && target.minor == 0 {
        return Ok(target.clone());
    }
    let row = if target.major > next_major {
        Row::SkipMajorVersion
    } else {
        Row::MajorUpgradeSkippingMinorVersion
    };
    latest_of_minor(pool, next_major, 0).ok_or_else(|| PlanError::MissingVersion {
        refusal: Refusal {
            rule: Rule::Table(row),
            from: cur.clone(),
            to: target.clone(),
        },
        needed: format!("{next_major}.0.x"),
    })
}

/// The next stop from `cur` towards `dest` in the same major.
fn step_within_major(
    cur: &Version,
    dest: &Version,
    pool: &[&Version],
) -> Result<Version, PlanError> {
    let next_minor = cur.minor.saturating_add(1);
    if dest.minor <= next_minor {
        return Ok(dest.clone());
    }
    latest_of_minor(pool, cur.major, next_minor).ok_or_else(|| PlanError::MissingVersion {
        refusal: Refusal {
            rule: Rule::Table(Row::SkipMinorVersion),
            from: cur.clone(),
            to: dest.clone(),
        },
        needed: format!("{}.{next_minor}.x", cur.major),
    })
}

/// The latest release of `major.minor` in the pool, else its latest pre-release.
fn latest_of_minor(pool: &[&Version], major: u64, minor: u64) -> Option<Version> {
    let of_minor = || pool.iter().filter(|v| v.major == major && v.minor == minor);
    of_minor()
        .filter(|v| is_release(v))
        .max()
        .or_else(|| of_minor().max())
        .map(|v| (*v).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn list(s: &str) -> Vec<Version> {
        s.split(',').map(|x| v(x.trim())).collect()
    }

    fn hops(p: &UpgradePlan) -> Vec<String> {
        p.hops.iter().map(ToString::to_string).collect()
    }

    const STRICT: JudgeOptions = JudgeOptions {
        allow_prerelease: false,
    };
    const LOOSE: JudgeOptions = JudgeOptions {
        allow_prerelease: true,
    };

    #[test]
    fn the_brief_example() {
        let available = list("2.4.1, 2.4.3, 2.5.0, 2.5.4, 2.6.0, 2.6.8, 2.7.0, 2.7.2");
        let p = plan(&v("2.4.1"), &v("2.7.2"), &available, &STRICT).unwrap();
        assert_eq!(
            hops(&p),
            ["2.4.1 -> 2.5.4", "2.5.4 -> 2.6.8", "2.6.8 -> 2.7.2"]
        );
        let rows: Vec<Row> = p.hops.iter().map(|h| h.row).collect();
        assert_eq!(rows, [Row::MinorUpgrade; 3]);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].starts_with("2.5.4 -> 2.6.8 runs the `metadatastoremigration` job"));
    }

    #[test]
    fn plans_as_the_rules_recommend() {
        let available = list(
            "2.5.0, 2.5.4, 2.6.0, 2.6.8, 2.7.0, 2.7.2, 3.0.0, 3.0.4, 3.1.0, 3.1.1, 3.2.0, \
             4.0.0, 4.0.1, 4.1.0",
        );
        let cases: &[(&str, &str, &[&str])] = &[
            ("2.5.3", "2.5.4", &["2.5.3 -> 2.5.4"]),
            ("2.5.0", "2.6.0", &["2.5.0 -> 2.6.0"]),
            ("2.6.8", "2.7.0", &["2.6.8 -> 2.7.0"]),
            // The last hop lands exactly on the target, not on its minor's latest patch.
            ("2.5.3", "2.7.0", &["2.5.3 -> 2.6.8", "2.6.8 -> 2.7.0"]),
            // Latest of the current major first, then the next major's .0 minor.
            (
                "2.5.3",
                "3.0.0",
                &["2.5.3 -> 2.6.8", "2.6.8 -> 2.7.2", "2.7.2 -> 3.0.0"],
            ),
            ("2.7.2", "3.0.4", &["2.7.2 -> 3.0.4"]),
            ("2.7.0", "3.0.0", &["2.7.0 -> 2.7.2", "2.7.2 -> 3.0.0"]),
            (
                "2.7.2",
                "3.2.0",
                &["2.7.2 -> 3.0.4", "3.0.4 -> 3.1.1", "3.1.1 -> 3.2.0"],
            ),
            (
                "2.7.2",
                "4.1.0",
                &[
                    "2.7.2 -> 3.0.4",
                    "3.0.4 -> 3.1.1",
                    "3.1.1 -> 3.2.0",
                    "3.2.0 -> 4.0.1",
                    "4.0.1 -> 4.1.0",
                ],
            ),
            // Above every listed 2.x release already: straight to the next major.
            ("2.7.9", "3.0.0", &["2.7.9 -> 3.0.0"]),
        ];
        for (from, to, want) in cases {
            let p = plan(&v(from), &v(to), &available, &STRICT)
                .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
            assert_eq!(hops(&p), *want, "{from} -> {to}");
        }
    }

    #[test]
    fn same_version_is_an_empty_plan() {
        let p = plan(&v("2.6.8"), &v("2.6.8"), &list("2.6.8"), &STRICT).unwrap();
        assert!(p.hops.is_empty() && p.warnings.is_empty());
        let p = plan(&v("2.6.8"), &v("2.6.8"), &[], &STRICT).unwrap();
        assert!(p.hops.is_empty());
    }

    #[test]
    fn refuses_with_the_blocking_rule() {
        let gap = list("2.5.0, 2.5.4, 2.7.0, 2.7.2, 3.1.0, 3.1.2");
        /// (current, target, available, blocking row, refusal prefix)
        type Case<'a> = (&'a str, &'a str, &'a [Version], Option<Row>, &'a str);
        let cases: &[Case] = &[
            (
                "2.6.8",
                "2.6.1",
                &gap,
                Some(Row::PatchDowngrade),
                "refused: patch downgrade (2.6.8 -> 2.6.1)",
            ),
            (
                "2.7.0",
                "2.5.4",
                &gap,
                Some(Row::MinorDowngrade),
                "refused: minor downgrade (2.7.0 -> 2.5.4)",
            ),
            (
                "3.0.0",
                "2.7.2",
                &gap,
                Some(Row::MajorDowngrade),
                "refused: major downgrade (3.0.0 -> 2.7.2)",
            ),
            (
                "2.5.4",
                "2.7.2",
                &gap,
                Some(Row::SkipMinorVersion),
                "refused: skip minor version (2.5.4 -> 2.7.2): when upgrading between minor \
                 versions you cannot skip versions (DTR upgrade rules, \"Upgrade DTR\" table row \
                 \"skip minor version\"); upgrade to 2.6.x first; no 2.6.x release is among the \
                 available versions",
            ),
            (
                "2.7.2",
                "3.1.2",
                &gap,
                Some(Row::MajorUpgradeSkippingMinorVersion),
                "refused: major upgrade skipping minor version (2.7.2 -> 3.1.2)",
            ),
            (
                "2.5.4",
                "2.7.3",
                &gap,
                None,
                "refused: target `2.7.3` is not among the available versions (2.5.0, 2.5.4, \
                 2.7.0, 2.7.2, 3.1.0, 3.1.2); choose one of them",
            ),
            // Without a list only the single hop can be judged.
            (
                "2.5.4",
                "2.7.2",
                &[],
                Some(Row::SkipMinorVersion),
                "refused: skip minor",
            ),
            (
                "2.7.2",
                "4.0.0",
                &[],
                Some(Row::SkipMajorVersion),
                "refused: skip major",
            ),
        ];
        for (from, to, available, row, prefix) in cases {
            let err = plan(&v(from), &v(to), available, &STRICT).unwrap_err();
            assert_eq!(err.row(), *row, "{from} -> {to}");
            let text = err.to_string();
            assert!(text.starts_with(prefix), "{from} -> {to}: {text}");
        }
    }

    #[test]
    fn missing_next_major_names_the_major_rows() {
        let available = list("2.7.2, 3.1.0, 4.0.0");
        let err = plan(&v("2.7.2"), &v("4.0.0"), &available, &STRICT).unwrap_err();
        assert_eq!(err.row(), Some(Row::SkipMajorVersion));
        assert!(
            err.to_string().ends_with(
                "upgrade to 3.0.x first; no 3.0.x release is among the available versions"
            )
        );
        let err = plan(&v("2.7.2"), &v("3.1.0"), &available, &STRICT).unwrap_err();
        assert_eq!(err.row(), Some(Row::MajorUpgradeSkippingMinorVersion));
    }

    #[test]
    fn a_hole_below_the_latest_of_the_major_blocks_a_major_upgrade() {
        let available = list("2.4.1, 2.7.0, 3.0.0");
        let err = plan(&v("2.4.1"), &v("3.0.0"), &available, &STRICT).unwrap_err();
        assert_eq!(err.row(), Some(Row::SkipMinorVersion));
        assert!(err.to_string().contains("(2.4.1 -> 2.7.0)"));
    }

    #[test]
    fn without_a_list_an_allowed_single_hop_is_the_plan() {
        let p = plan(&v("2.5.3"), &v("2.6.8"), &[], &STRICT).unwrap();
        assert_eq!(hops(&p), ["2.5.3 -> 2.6.8"]);
        let p = plan(&v("2.6.8"), &v("3.0.0"), &[], &STRICT).unwrap();
        assert_eq!(p.hops[0].row, Row::MajorUpgrade);
        assert!(p.warnings[0].starts_with("no list of available versions"));
    }

    #[test]
    fn prereleases_in_the_list_are_ignored_unless_allowed() {
        let available = list("2.5.4, 2.6.0-rc.1, 2.6.9-rc.1, 2.6.8, 2.7.0, 2.7.1-rc.1");
        let p = plan(&v("2.5.4"), &v("2.7.0"), &available, &STRICT).unwrap();
        assert_eq!(hops(&p), ["2.5.4 -> 2.6.8", "2.6.8 -> 2.7.0"]);
        // Allowed, releases are still preferred as stops.
        let p = plan(&v("2.5.4"), &v("2.7.0"), &available, &LOOSE).unwrap();
        assert_eq!(hops(&p), ["2.5.4 -> 2.6.8", "2.6.8 -> 2.7.0"]);
        let err = plan(&v("2.6.8"), &v("2.7.1-rc.1"), &available, &STRICT).unwrap_err();
        assert!(err.to_string().starts_with("refused: pre-release version"));
        let p = plan(&v("2.6.8"), &v("2.7.1-rc.1"), &available, &LOOSE).unwrap();
        assert_eq!(hops(&p), ["2.6.8 -> 2.7.1-rc.1"]);
        // A minor with only a pre-release is a stop only when allowed.
        let only_rc = list("2.5.4, 2.6.0-rc.1, 2.7.0");
        let err = plan(&v("2.5.4"), &v("2.7.0"), &only_rc, &STRICT).unwrap_err();
        assert_eq!(err.row(), Some(Row::SkipMinorVersion));
        let p = plan(&v("2.5.4"), &v("2.7.0"), &only_rc, &LOOSE).unwrap();
        assert_eq!(hops(&p), ["2.5.4 -> 2.6.0-rc.1", "2.6.0-rc.1 -> 2.7.0"]);
    }

    #[test]
    fn cluster_version_is_the_lowest() {
        assert_eq!(cluster_version(&[]), None);
        assert_eq!(
            cluster_version(&list("2.6.8, 2.5.3, 2.6.8")),
            Some(v("2.5.3"))
        );
        assert_eq!(cluster_version(&list("2.6.8")), Some(v("2.6.8")));
        assert_eq!(
            cluster_version(&list("2.7.0, 2.7.0-rc.2, 2.6.10")),
            Some(v("2.6.10"))
        );
    }

    /// A small deterministic generator, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn grid(rng: &mut XorShift, keep_percent: u64, prerelease: bool) -> Vec<Version> {
        let mut out = Vec::new();
        for major in 0..4 {
            for minor in 0..4 {
                for patch in 0..3 {
                    if rng.below(100) < keep_percent {
                        out.push(Version::new(major, minor, patch));
                    }
                    if prerelease && rng.below(10) == 0 {
                        out.push(v(&format!("{major}.{minor}.{patch}-rc.1")));
                    }
                }
            }
        }
        out
    }

    /// Checks every invariant of a successful plan.
    fn check_plan(p: &UpgradePlan, current: &Version, target: &Version, available: &[Version]) {
        let opts = LOOSE;
        if current == target {
            assert!(p.hops.is_empty());
            return;
        }
        let ctx = format!("{current} -> {target} over [{}]", join(available));
        assert!(!p.hops.is_empty(), "{ctx}");
        assert_eq!(&p.hops[0].from, current, "{ctx}");
        assert_eq!(&p.hops[p.hops.len() - 1].to, target, "{ctx}");
        for pair in p.hops.windows(2) {
            assert_eq!(pair[0].to, pair[1].from, "{ctx}: chain is not contiguous");
        }
        for hop in &p.hops {
            assert_eq!(
                judge(&hop.from, &hop.to, &opts),
                Verdict::Allowed { row: hop.row },
                "{ctx}: hop {hop}"
            );
            assert!(available.contains(&hop.to), "{ctx}: {hop} leaves the list");
            if hop.row == Row::MajorUpgrade {
                // Before a major hop, the latest release of the current major was reached.
                let above = available
                    .iter()
                    .any(|v| v.major == hop.from.major && is_release(v) && *v > hop.from);
                assert!(!above, "{ctx}: {hop} is not from the latest of its major");
            }
        }
        // Intermediate stops are the latest release of their minor.
        for hop in &p.hops[..p.hops.len() - 1] {
            let later = available.iter().any(|v| {
                v.major == hop.to.major && v.minor == hop.to.minor && is_release(v) && *v > hop.to
            });
            assert!(!later, "{ctx}: stop {} is not its minor's latest", hop.to);
        }
    }

    #[test]
    fn every_planned_hop_is_allowed_property() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut planned = 0;
        for round in 0..3000 {
            let prerelease = round % 3 == 0;
            let opts = if prerelease { LOOSE } else { STRICT };
            let keep_percent = 20 + rng.below(80);
            let available = grid(&mut rng, keep_percent, prerelease);
            if available.is_empty() {
                continue;
            }
            let target = available[rng.below(available.len() as u64) as usize].clone();
            let current = if rng.below(2) == 0 {
                available[rng.below(available.len() as u64) as usize].clone()
            } else {
                Version::new(rng.below(4), rng.below(4), rng.below(3))
            };
            match plan(&current, &target, &available, &opts) {
                Ok(p) => {
                    planned += 1;
                    check_plan(&p, &current, &target, &available);
                }
                Err(err) => {
                    if target < current && is_release(&target) && is_release(&current) {
                        let row = err.row();
                        assert!(
                            matches!(
                                row,
                                Some(
                                    Row::PatchDowngrade | Row::MinorDowngrade | Row::MajorDowngrade
                                )
                            ),
                            "{current} -> {target}: {err}"
                        );
                    }
                    assert!(err.to_string().starts_with("refused: "), "{err}");
                }
            }
        }
        assert!(planned > 1000, "only {planned} plans succeeded");
    }

    #[test]
    fn a_complete_list_always_plans_an_upgrade_property() {
        let mut rng = XorShift(42);
        let available = grid(&mut rng, 100, false);
        for current in &available {
            for target in available.iter().filter(|t| *t >= current) {
                let p = plan(current, target, &available, &STRICT)
                    .unwrap_or_else(|e| panic!("{current} -> {target}: {e}"));
                check_plan(&p, current, target, &available);
            }
        }
    }
}
