//! The product's safety promise: DTR's upgrade table and replica rules, as pure functions.
//!
//! No I/O here. Everything is decided from versions and replica states handed in, and every
//! refusal names the rule of the source documents (the "Upgrade DTR" table, the "Set up high
//! availability" page) it enforces and the way forward.

pub mod ha;
pub mod planner;
pub mod upgrade;
pub mod upgrade_path;

pub use ha::{
    HaRefusal, ReplicaState, ScaleStep, check_final_count, check_remove, failures_tolerated,
    plan_scale, replica_id_for, sizing_warnings,
};
pub use planner::{PlanError, UpgradeHop, UpgradePlan, cluster_version, plan};
pub use upgrade::{
    JudgeOptions, Refusal, Row, Rule, Verdict, classify, judge, major_upgrade_warning,
};
pub use upgrade_path::upgrade_path_command;
