//! `ticketctl order cancel ORDER_ID`: an operator cancels an order (a paid
//! one is refunded), as `POST /v1/orders/{orderId}/cancel` does.

use anyhow::Context;

use crate::cli::{GlobalOpts, OrderCommand};
use crate::model::{OrderAction, OrderChange, OrderId};
use crate::UsageError;

pub async fn run(global: &GlobalOpts, cmd: OrderCommand) -> anyhow::Result<()> {
    let cfg = super::load_config(global, None)?;
    let OrderCommand::Cancel { order_id } = cmd;
    let id = OrderId::parse(&order_id)
        .ok_or_else(|| UsageError(format!("{order_id:?} is not an order id")))?;
    let store = super::connect(&cfg).await?;
    match store
        .change_order(&id, OrderAction::Cancel, "", None)
        .await
        .context("cannot cancel the order")?
    {
        OrderChange::Done { order, changed } => {
            let n = order.tickets.len();
            if changed {
                println!(
                    "order {order_id} is {} now: {n} tickets available again",
                    order.status.as_str()
                );
            } else {
                println!(
                    "order {order_id} is already {}; nothing to do",
                    order.status.as_str()
                );
            }
        }
        OrderChange::NotFound => anyhow::bail!("no order {order_id}"),
        // A cancel applies to every status; these answer payment results.
        OrderChange::State(s) => anyhow::bail!("order {order_id} is {}", s.as_str()),
        OrderChange::AmountMismatch(_) => anyhow::bail!("order {order_id}: unexpected answer"),
    }
    Ok(())
}
