//! The "Upgrade DTR" table: which single version hops DTR supports.
//!
//! Pure: no I/O. [`judge`] encodes the seed's From/To/Supported table once; every
//! [`Refusal`] names the table row (or the seed sentence) it comes from and the way forward.
//!
//! Decisions where the seed is silent, all taking the safe reading:
//! - Rows are chosen on `MAJOR.MINOR.PATCH` alone. A major upgrade is supported only to the
//!   `.0` minor of the next major ("upgrade to the earliest available minor version"; the
//!   table's `x+1.0.0`), to any patch of it, since patch versions carry no data migration.
//! - Pre-release and build-metadata versions are outside the table and refused unless
//!   [`JudgeOptions::allow_prerelease`]. With it, they are judged by their numbers; two
//!   versions with the same numbers are ordered by pre-release precedence (forward is a
//!   "patch upgrade", backward a "patch downgrade"), and two that differ only in build
//!   metadata have no order at all and are refused.
//! - The same version on both sides, build metadata included, is a [`Verdict::NoOp`] even
//!   for a pre-release: nothing changes, so nothing can break.

use std::cmp::Ordering;
use std::fmt;

use semver::Version;

/// A row of the seed's From/To/Supported table, in the table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Row {
    PatchUpgrade,
    SkipPatchVersion,
    PatchDowngrade,
    MinorUpgrade,
    SkipMinorVersion,
    MinorDowngrade,
    SkipMajorVersion,
    MajorDowngrade,
    MajorUpgrade,
    MajorUpgradeSkippingMinorVersion,
}

impl Row {
    /// Every row, in the table's order.
    pub const ALL: [Row; 10] = [
        Row::PatchUpgrade,
        Row::SkipPatchVersion,
        Row::PatchDowngrade,
        Row::MinorUpgrade,
        Row::SkipMinorVersion,
        Row::MinorDowngrade,
        Row::SkipMajorVersion,
        Row::MajorDowngrade,
        Row::MajorUpgrade,
        Row::MajorUpgradeSkippingMinorVersion,
    ];

    /// The table's Description column, verbatim.
    pub fn description(self) -> &'static str {
        match self {
            Row::PatchUpgrade => "patch upgrade",
            Row::SkipPatchVersion => "skip patch version",
            Row::PatchDowngrade => "patch downgrade",
            Row::MinorUpgrade => "minor upgrade",
            Row::SkipMinorVersion => "skip minor version",
            Row::MinorDowngrade => "minor downgrade",
            Row::SkipMajorVersion => "skip major version",
            Row::MajorDowngrade => "major downgrade",
            Row::MajorUpgrade => "major upgrade",
            Row::MajorUpgradeSkippingMinorVersion => "major upgrade skipping minor version",
        }
    }

    /// The table's From and To columns, verbatim.
    pub fn pattern(self) -> (&'static str, &'static str) {
        match self {
            Row::PatchUpgrade => ("x.y.0", "x.y.1"),
            Row::SkipPatchVersion => ("x.y.0", "x.y.2"),
            Row::PatchDowngrade => ("x.y.2", "x.y.1"),
            Row::MinorUpgrade => ("x.y.*", "x.y+1.*"),
            Row::SkipMinorVersion => ("x.y.*", "x.y+2.*"),
            Row::MinorDowngrade => ("x.y.*", "x.y-1.*"),
            Row::SkipMajorVersion => ("x..", "x+2.."),
            Row::MajorDowngrade => ("x..", "x-1.."),
            Row::MajorUpgrade => ("x.y.z", "x+1.0.0"),
            Row::MajorUpgradeSkippingMinorVersion => ("x.y.z", "x+1.y+1.z"),
        }
    }

    /// The table's Supported column.
    pub fn supported(self) -> bool {
        matches!(
            self,
            Row::PatchUpgrade | Row::SkipPatchVersion | Row::MinorUpgrade | Row::MajorUpgrade
        )
    }

    /// The seed sentence behind the row.
    fn rule(self) -> &'static str {
        match self {
            Row::PatchUpgrade | Row::SkipPatchVersion => {
                "when upgrading from one patch version to another, you can skip patch versions \
                 because no data migration is performed for patch versions"
            }
            Row::PatchDowngrade | Row::MinorDowngrade | Row::MajorDowngrade => {
                "downgrades are not supported"
            }
            Row::MinorUpgrade | Row::SkipMinorVersion => {
                "when upgrading between minor versions you cannot skip versions"
            }
            Row::SkipMajorVersion => {
                "when upgrading between major versions, make sure to upgrade one major version \
                 at a time"
            }
            Row::MajorUpgrade | Row::MajorUpgradeSkippingMinorVersion => {
                "when upgrading between major versions, make sure to upgrade one major version \
                 at a time, and also to upgrade to the earliest available minor version"
            }
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// How strictly to judge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JudgeOptions {
    /// Judge pre-release and build-metadata versions by their numbers instead of refusing
    /// them (`--allow-prerelease`).
    pub allow_prerelease: bool,
}

/// What the table says about one hop.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        row: Row,
    },
    /// `from` and `to` are the same version.
    NoOp,
    Refused(Refusal),
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

/// Why a hop is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A table row whose Supported column says "no".
    Table(Row),
    /// A pre-release or build-metadata version without `--allow-prerelease`.
    PreRelease,
    /// The same release on both sides, differing only in build metadata, which has no order.
    BuildMetadataOnly,
}

/// A refused hop: the rule that blocks it, and the hop itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub from: Version,
    pub to: Version,
}

impl Refusal {
    /// The blocking table row, when the refusal comes from the table.
    pub fn row(&self) -> Option<Row> {
        match self.rule {
            Rule::Table(row) => Some(row),
            Rule::PreRelease | Rule::BuildMetadataOnly => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (&self.from, &self.to);
        match self.rule {
            Rule::Table(row) => {
                let desc = row.description();
                write!(
                    f,
                    "refused: {desc} ({from} -> {to}): {} (DTR upgrade rules, \"Upgrade DTR\" \
                     table row \"{desc}\"); ",
                    row.rule()
                )?;
                match row {
                    Row::SkipMinorVersion => write!(
                        f,
                        "upgrade to {}.{}.x first",
                        from.major,
                        from.minor.saturating_add(1)
                    ),
                    Row::SkipMajorVersion => {
                        write!(f, "upgrade to {}.0.x first", from.major.saturating_add(1))
                    }
                    Row::MajorUpgradeSkippingMinorVersion => {
                        write!(f, "upgrade to {}.0.x first", to.major)
                    }
                    _ => write!(f, "stay on {from} or choose a target above it"),
                }
            }
            Rule::PreRelease => {
                let odd = if is_release(from) { to } else { from };
                write!(
                    f,
                    "refused: pre-release version ({from} -> {to}): the \"Upgrade DTR\" table \
                     covers released MAJOR.MINOR.PATCH versions, and `{odd}` carries pre-release \
                     or build metadata; choose a released version, or pass `--allow-prerelease` \
                     to judge it by the table's numbers anyway"
                )
            }
            Rule::BuildMetadataOnly => write!(
                f,
                "refused: same release, different build ({from} -> {to}): build metadata has \
                 no order (semantic versioning), so the \"Upgrade DTR\" table cannot tell an \
                 upgrade from a downgrade; choose a target with a different version number"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// A released version: no pre-release and no build metadata.
pub(crate) fn is_release(v: &Version) -> bool {
    v.pre.is_empty() && v.build.is_empty()
}

/// Judges the single hop `from` → `to` by the seed's table.
pub fn judge(from: &Version, to: &Version, opts: &JudgeOptions) -> Verdict {
    if from == to {
        return Verdict::NoOp;
    }
    let refuse = |rule| {
        Verdict::Refused(Refusal {
            rule,
            from: from.clone(),
            to: to.clone(),
        })
    };
    if !(opts.allow_prerelease || (is_release(from) && is_release(to))) {
        return refuse(Rule::PreRelease);
    }
    match classify(from, to) {
        Some(row) if row.supported() => Verdict::Allowed { row },
        Some(row) => refuse(Rule::Table(row)),
        None => refuse(Rule::BuildMetadataOnly),
    }
}

/// The table row for `from` → `to`; `None` when both have the same precedence (same numbers
/// and pre-release).
pub fn classify(from: &Version, to: &Version) -> Option<Row> {
    use Ordering::{Equal, Greater, Less};
    let row = match to.major.cmp(&from.major) {
        Less => Row::MajorDowngrade,
        Greater if to.major - from.major > 1 => Row::SkipMajorVersion,
        Greater if to.minor == 0 => Row::MajorUpgrade,
        Greater => Row::MajorUpgradeSkippingMinorVersion,
        Equal => match to.minor.cmp(&from.minor) {
            Less => Row::MinorDowngrade,
            Greater if to.minor - from.minor > 1 => Row::SkipMinorVersion,
            Greater => Row::MinorUpgrade,
            Equal => match to.patch.cmp(&from.patch) {
                Less => Row::PatchDowngrade,
                Greater if to.patch - from.patch > 1 => Row::SkipPatchVersion,
                Greater => Row::PatchUpgrade,
                // Same numbers: only pre-release precedence can order them.
                Equal => match to.pre.cmp(&from.pre) {
                    Less => Row::PatchDowngrade,
                    Greater => Row::PatchUpgrade,
                    Equal => return None,
                },
            },
        },
    };
    Some(row)
}

/// The seed: "It is strongly recommended that you first upgrade to the latest minor/patch
/// version for your major version."
///
/// Call it for a major upgrade starting at `from`. Returns the recommendation when
/// `available` holds a released version of `from`'s major above `from`; pre-releases never
/// count as "latest".
pub fn major_upgrade_warning(from: &Version, available: &[Version]) -> Option<String> {
    let latest = available
        .iter()
        .filter(|v| v.major == from.major && is_release(v) && *v > from)
        .max()?;
    Some(format!(
        "{from} is not the latest available {}.x release: \"it is strongly recommended that \
         you first upgrade to the latest minor/patch version for your major version\" (DTR \
         upgrade rules); upgrade to {latest} before the major upgrade",
        from.major
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn verdict(from: &str, to: &str) -> Verdict {
        judge(&v(from), &v(to), &JudgeOptions::default())
    }

    /// Several concrete hops per table row, in the table's order.
    const TABLE: &[(Row, &[(&str, &str)])] = &[
        (
            Row::PatchUpgrade,
            &[
                ("2.6.0", "2.6.1"),
                ("2.5.3", "2.5.4"),
                ("0.0.0", "0.0.1"),
                ("3.1.9", "3.1.10"),
            ],
        ),
        (
            Row::SkipPatchVersion,
            &[
                ("2.6.0", "2.6.2"),
                ("2.5.1", "2.5.9"),
                ("0.1.0", "0.1.7"),
                ("2.7.0", "2.7.100"),
            ],
        ),
        (
            Row::PatchDowngrade,
            &[("2.6.2", "2.6.1"), ("2.6.9", "2.6.0"), ("0.0.1", "0.0.0")],
        ),
        (
            Row::MinorUpgrade,
            &[
                ("2.5.0", "2.6.0"),
                ("2.5.3", "2.6.8"),
                ("2.5.9", "2.6.0"),
                ("2.6.8", "2.7.0"),
                ("0.0.5", "0.1.0"),
            ],
        ),
        (
            Row::SkipMinorVersion,
            &[
                ("2.5.3", "2.7.0"),
                ("2.4.0", "2.6.8"),
                ("2.0.0", "2.9.9"),
                ("0.1.0", "0.3.0"),
            ],
        ),
        (
            Row::MinorDowngrade,
            &[("2.6.0", "2.5.9"), ("2.7.2", "2.5.0"), ("0.1.0", "0.0.9")],
        ),
        (
            Row::SkipMajorVersion,
            &[
                ("2.7.2", "4.0.0"),
                ("1.0.0", "3.0.0"),
                ("0.9.9", "2.0.0"),
                ("2.0.0", "9.1.1"),
            ],
        ),
        (
            Row::MajorDowngrade,
            &[("3.0.0", "2.7.9"), ("3.0.0", "1.0.0"), ("1.0.0", "0.9.9")],
        ),
        (
            Row::MajorUpgrade,
            &[
                ("2.7.2", "3.0.0"),
                ("2.4.1", "3.0.0"),
                ("2.7.2", "3.0.5"),
                ("0.4.2", "1.0.0"),
                ("1.0.0", "2.0.1"),
            ],
        ),
        (
            Row::MajorUpgradeSkippingMinorVersion,
            &[
                ("2.7.2", "3.1.0"),
                ("2.7.2", "3.1.3"),
                ("2.0.0", "3.2.0"),
                ("0.9.9", "1.1.0"),
            ],
        ),
    ];

    #[test]
    fn every_table_row_is_covered() {
        for row in Row::ALL {
            assert!(TABLE.iter().any(|(r, _)| *r == row), "{row} has no cases");
        }
    }

    #[test]
    fn table_rows_judge_as_the_seed_says() {
        for (row, cases) in TABLE {
            for (from, to) in *cases {
                assert_eq!(classify(&v(from), &v(to)), Some(*row), "{from} -> {to}");
                let got = verdict(from, to);
                if row.supported() {
                    assert_eq!(got, Verdict::Allowed { row: *row }, "{from} -> {to}");
                } else {
                    let Verdict::Refused(refusal) = got else {
                        panic!("{from} -> {to} should be refused, got {got:?}");
                    };
                    assert_eq!(refusal.row(), Some(*row));
                    assert_eq!((refusal.from, refusal.to), (v(from), v(to)));
                }
            }
        }
    }

    #[test]
    fn supported_column_matches_the_seed() {
        let supported: Vec<_> = Row::ALL.into_iter().filter(|r| r.supported()).collect();
        assert_eq!(
            supported,
            [
                Row::PatchUpgrade,
                Row::SkipPatchVersion,
                Row::MinorUpgrade,
                Row::MajorUpgrade
            ]
        );
    }

    #[test]
    fn descriptions_and_patterns_are_the_seed_table() {
        let rendered: Vec<String> = Row::ALL
            .iter()
            .map(|r| {
                let (from, to) = r.pattern();
                let yes = if r.supported() { "yes" } else { "no" };
                format!("{} | {from} | {to} | {yes} |", r.description())
            })
            .collect();
        assert_eq!(
            rendered.join("\n"),
            "patch upgrade | x.y.0 | x.y.1 | yes |
skip patch version | x.y.0 | x.y.2 | yes |
patch downgrade | x.y.2 | x.y.1 | no |
minor upgrade | x.y.* | x.y+1.* | yes |
skip minor version | x.y.* | x.y+2.* | no |
minor downgrade | x.y.* | x.y-1.* | no |
skip major version | x.. | x+2.. | no |
major downgrade | x.. | x-1.. | no |
major upgrade | x.y.z | x+1.0.0 | yes |
major upgrade skipping minor version | x.y.z | x+1.y+1.z | no |"
        );
        assert_eq!(Row::SkipMinorVersion.to_string(), "skip minor version");
    }

    #[test]
    fn same_version_is_a_no_op() {
        for s in ["2.6.8", "0.0.0", "2.7.0-rc.1", "2.7.0+build.5"] {
            assert_eq!(verdict(s, s), Verdict::NoOp, "{s}");
        }
    }

    #[test]
    fn refusal_names_the_row_the_rule_and_the_way_forward() {
        let cases = [
            (
                "2.5.3",
                "2.7.0",
                "refused: skip minor version (2.5.3 -> 2.7.0): when upgrading between minor \
                 versions you cannot skip versions (DTR upgrade rules, \"Upgrade DTR\" table row \
                 \"skip minor version\"); upgrade to 2.6.x first",
            ),
            (
                "2.6.2",
                "2.6.1",
                "refused: patch downgrade (2.6.2 -> 2.6.1): downgrades are not supported (DTR \
                 upgrade rules, \"Upgrade DTR\" table row \"patch downgrade\"); stay on 2.6.2 or \
                 choose a target above it",
            ),
            (
                "2.6.0",
                "2.5.9",
                "refused: minor downgrade (2.6.0 -> 2.5.9): downgrades are not supported (DTR \
                 upgrade rules, \"Upgrade DTR\" table row \"minor downgrade\"); stay on 2.6.0 or \
                 choose a target above it",
            ),
            (
                "3.0.0",
                "2.7.9",
                "refused: major downgrade (3.0.0 -> 2.7.9): downgrades are not supported (DTR \
                 upgrade rules, \"Upgrade DTR\" table row \"major downgrade\"); stay on 3.0.0 or \
                 choose a target above it",
            ),
            (
                "2.7.2",
                "4.0.0",
                "refused: skip major version (2.7.2 -> 4.0.0): when upgrading between major \
                 versions, make sure to upgrade one major version at a time (DTR upgrade rules, \
                 \"Upgrade DTR\" table row \"skip major version\"); upgrade to 3.0.x first",
            ),
            (
                "2.7.2",
                "3.1.0",
                "refused: major upgrade skipping minor version (2.7.2 -> 3.1.0): when upgrading \
                 between major versions, make sure to upgrade one major version at a time, and \
                 also to upgrade to the earliest available minor version (DTR upgrade rules, \
                 \"Upgrade DTR\" table row \"major upgrade skipping minor version\"); upgrade to \
                 3.0.x first",
            ),
        ];
        for (from, to, want) in cases {
            let Verdict::Refused(refusal) = verdict(from, to) else {
                panic!("{from} -> {to} should be refused");
            };
            assert_eq!(refusal.to_string(), want);
        }
    }

    #[test]
    fn prerelease_and_build_metadata_are_refused_by_default() {
        for (from, to) in [
            ("2.6.8", "2.7.0-rc.1"),
            ("2.7.0-rc.1", "2.7.0"),
            ("2.6.8", "2.6.9+build.3"),
            ("2.6.8+build.3", "2.6.9"),
            ("2.6.8-beta", "2.5.0"),
        ] {
            let Verdict::Refused(refusal) = verdict(from, to) else {
                panic!("{from} -> {to} should be refused");
            };
            assert_eq!(refusal.rule, Rule::PreRelease);
            assert_eq!(refusal.row(), None);
            let text = refusal.to_string();
            assert!(text.starts_with("refused: pre-release version ("), "{text}");
            assert!(text.contains("--allow-prerelease"), "{text}");
        }
        let Verdict::Refused(refusal) = verdict("2.6.8", "2.7.0-rc.1") else {
            unreachable!()
        };
        assert!(
            refusal
                .to_string()
                .contains("`2.7.0-rc.1` carries pre-release")
        );
    }

    #[test]
    fn prerelease_allowed_is_judged_by_its_numbers() {
        let opts = JudgeOptions {
            allow_prerelease: true,
        };
        let cases = [
            ("2.6.8", "2.7.0-rc.1", Some(Row::MinorUpgrade)),
            ("2.5.3", "2.7.0-rc.1", Some(Row::SkipMinorVersion)),
            ("2.7.0-rc.1", "2.7.0", Some(Row::PatchUpgrade)),
            ("2.7.0-rc.1", "2.7.0-rc.2", Some(Row::PatchUpgrade)),
            ("2.7.0", "2.7.0-rc.1", Some(Row::PatchDowngrade)),
            ("2.6.8+b1", "2.6.9+b1", Some(Row::PatchUpgrade)),
            ("2.7.2", "3.0.0-beta.1", Some(Row::MajorUpgrade)),
        ];
        for (from, to, row) in cases {
            assert_eq!(classify(&v(from), &v(to)), row, "{from} -> {to}");
            let got = judge(&v(from), &v(to), &opts);
            match row {
                Some(r) if r.supported() => assert_eq!(got, Verdict::Allowed { row: r }),
                Some(r) => match got {
                    Verdict::Refused(refusal) => assert_eq!(refusal.row(), Some(r)),
                    other => panic!("{from} -> {to}: {other:?}"),
                },
                None => unreachable!(),
            }
        }
    }

    #[test]
    fn build_metadata_alone_has_no_order() {
        let opts = JudgeOptions {
            allow_prerelease: true,
        };
        let Verdict::Refused(refusal) = judge(&v("2.6.8+b1"), &v("2.6.8+b2"), &opts) else {
            panic!("should be refused");
        };
        assert_eq!(refusal.rule, Rule::BuildMetadataOnly);
        assert!(
            refusal
                .to_string()
                .starts_with("refused: same release, different build")
        );
        assert_eq!(classify(&v("2.6.8"), &v("2.6.8+b2")), None);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let max = u64::MAX;
        let cases = [
            (format!("{max}.0.0"), format!("{max}.0.1"), "patch upgrade"),
            (
                format!("{max}.{max}.0"),
                format!("{max}.{max}.{max}"),
                "skip patch version",
            ),
            (format!("0.0.{max}"), "0.1.0".to_owned(), "minor upgrade"),
            (
                format!("0.{max}.{max}"),
                "1.0.0".to_owned(),
                "major upgrade",
            ),
            (
                "0.0.0".to_owned(),
                format!("{max}.0.0"),
                "skip major version",
            ),
            (
                format!("{max}.{max}.{max}"),
                "0.0.0".to_owned(),
                "major downgrade",
            ),
            (
                "1.0.0".to_owned(),
                format!("1.{max}.0"),
                "skip minor version",
            ),
        ];
        for (from, to, row) in cases {
            let (from, to) = (v(&from), v(&to));
            assert_eq!(classify(&from, &to).map(Row::description), Some(row));
            if let Verdict::Refused(refusal) = judge(&from, &to, &JudgeOptions::default()) {
                assert!(refusal.to_string().contains(row));
            }
        }
    }

    #[test]
    fn zero_major_versions_follow_the_same_table() {
        assert!(verdict("0.1.0", "0.2.0").is_allowed());
        assert!(!verdict("0.1.0", "0.3.0").is_allowed());
        assert!(verdict("0.9.0", "1.0.3").is_allowed());
        assert!(!verdict("0.9.0", "1.1.0").is_allowed());
    }

    #[test]
    fn major_upgrade_warning_recommends_the_latest_of_the_current_major() {
        let available: Vec<Version> = ["2.6.8", "2.7.0", "2.7.2", "2.7.3-rc.1", "3.0.0"]
            .iter()
            .map(|s| v(s))
            .collect();
        let warning = major_upgrade_warning(&v("2.6.8"), &available).unwrap();
        assert_eq!(
            warning,
            "2.6.8 is not the latest available 2.x release: \"it is strongly recommended that \
             you first upgrade to the latest minor/patch version for your major version\" (DTR \
             upgrade rules); upgrade to 2.7.2 before the major upgrade"
        );
        assert_eq!(major_upgrade_warning(&v("2.7.2"), &available), None);
        assert_eq!(major_upgrade_warning(&v("2.7.5"), &available), None);
        assert_eq!(major_upgrade_warning(&v("2.7.2"), &[]), None);
    }
}
