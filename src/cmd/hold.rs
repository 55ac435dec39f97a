//! `ticketctl hold release HOLD_ID`: an operator releases a live hold.

use anyhow::Context;

use crate::cli::{GlobalOpts, HoldCommand};
use crate::model::{CancelOutcome, HoldId};
use crate::store::HoldRef;
use crate::UsageError;

pub async fn run(global: &GlobalOpts, cmd: HoldCommand) -> anyhow::Result<()> {
    let cfg = super::load_config(global, None)?;
    let HoldCommand::Release { hold_id } = cmd;
    let id = HoldId::parse(&hold_id)
        .ok_or_else(|| UsageError(format!("{hold_id:?} is not a hold id")))?;
    let store = super::connect(&cfg).await?;
    match store
        .cancel(&HoldRef::Id(&id), None)
        .await
        .context("cannot release the hold")?
    {
        CancelOutcome::Cancelled(n) => {
            println!("released hold {hold_id}: {n} tickets available again")
        }
        _ => println!(
            "hold {hold_id} is not live (already released, expired or bought); nothing to do"
        ),
    }
    Ok(())
}
