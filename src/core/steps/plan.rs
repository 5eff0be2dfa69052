//! What the data steps of a rung will do in a promotion: read from the target (its
//! `_d1ctl_steps` and the estimates) and the rung below's records, for `plan`, `promote` and
//! `checklist`.

use serde::Serialize;

use crate::backend::Backend;
use crate::core::ledger::MigrationStatus;
use crate::core::promote::Gate;
use crate::core::steps::{self, Decision, Rerun, Step, StepRecord, StepState, StepStatus};
use crate::core::write::step::estimate;

/// A step as the promotion plans it: what it is on the target, and what the promotion does.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// What the step is on the target now (name, kind, after, state, record).
    #[serde(flatten)]
    pub status: StepStatus,
    #[serde(flatten)]
    pub decision: Decision,
    pub estimated_rows: Option<i64>,
    /// The rung below's record of the step (`None` there: not run, or the source is the folder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_record: Option<StepRecord>,
}

/// The rung below's records of the steps (`None` when the source is the folder).
pub type Below = Option<(String, Vec<StepRecord>)>;

pub fn source_of<'a>(below: &'a Below, step: &Step) -> Option<(&'a str, Option<StepRecord>)> {
    below.as_ref().map(|(name, records)| {
        (
            name.as_str(),
            records.iter().find(|r| r.name == step.name).cloned(),
        )
    })
}

/// What each step would do once `pending` is applied to the target (`migrations` are its
/// statuses now). Reads the target's `_d1ctl_steps` and the estimates.
pub async fn preview(
    steps: &[Step],
    env: &str,
    backend: &dyn Backend,
    migrations: &[MigrationStatus],
    pending: &[String],
    below: &Below,
) -> anyhow::Result<Vec<PlannedStep>> {
    let records = steps::ledger::read(backend).await.map_err(|error| {
        anyhow::Error::from(error).context(format!("could not read the data steps of `{env}`"))
    })?;
    let statuses = steps::statuses(steps, migrations, &records, pending);
    let mut planned = Vec::with_capacity(steps.len());
    for (step, status) in steps.iter().zip(statuses) {
        let decision = steps::decide(
            &status,
            env,
            source_of(below, step)
                .as_ref()
                .map(|(n, r)| (*n, r.as_ref())),
            &step.checksum,
            Rerun::No,
        );
        let estimated_rows = if decision == Decision::Run {
            estimate(backend, step).await
        } else {
            None
        };
        planned.push(PlannedStep {
            status,
            decision,
            estimated_rows,
            source_record: source_of(below, step).and_then(|(_, record)| record),
        });
    }
    Ok(planned)
}

/// The promotion gate of the steps: an edited step (here, or a version the rung below ran
/// that is not the file's) blocks like an edited migration. `None` when nothing blocks.
pub fn gate(planned: &[PlannedStep]) -> Option<Gate> {
    let edited: Vec<&str> = planned
        .iter()
        .filter_map(|step| match &step.decision {
            Decision::Blocked { why, .. } if step.status.state != StepState::Interrupted => {
                Some(why.as_str())
            }
            _ => None,
        })
        .collect();
    (!edited.is_empty()).then(|| Gate {
        name: "steps",
        passed: false,
        detail: edited.join("; "),
    })
}
