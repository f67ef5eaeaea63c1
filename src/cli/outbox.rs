//! `outbox`: the dead letters, listed, queued again or dropped, straight in the store.

use anyhow::{Context, bail};
use clap::Subcommand;

use beckn_adapter::config::values::HumanDuration;
use beckn_adapter::store;

#[derive(Subcommand)]
pub enum OutboxCommand {
    /// Pending and dead counts, and the dead letters with their last errors.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Queue a dead letter again, due now, with a fresh deadline.
    Retry {
        id: i64,
        /// How long the revived message may be retried.
        #[arg(long, default_value = "10m")]
        deadline: HumanDuration,
    },
    /// Delete a dead letter.
    Drop { id: i64 },
}

pub async fn run(store_url: &str, command: OutboxCommand) -> anyhow::Result<()> {
    let store = store::open(store_url)
        .await
        .with_context(|| format!("opening the store {store_url}"))?;
    match command {
        OutboxCommand::List { limit } => {
            let counts = store.counts().await?;
            println!("pending: {}  dead: {}", counts.pending, counts.dead);
            for d in store.dead_letters(limit).await? {
                println!(
                    "#{} {} {} -> {} (transaction {}, message {}) after {} attempts: {}",
                    d.id,
                    d.flow,
                    d.action,
                    d.url,
                    d.transaction_id,
                    d.message_id,
                    d.attempts,
                    d.last_error.unwrap_or_default()
                );
            }
        }
        OutboxCommand::Retry { id, deadline } => {
            // An operator's command, run now: the system's time.
            let now = store::now_ms();
            if !store
                .revive(id, now, now + deadline.0.as_millis() as i64)
                .await?
            {
                bail!("#{id} is not a dead letter");
            }
            println!("#{id} queued again; a running adapter sends it within a second");
        }
        OutboxCommand::Drop { id } => {
            if !store.discard(id).await? {
                bail!("#{id} is not a dead letter");
            }
            println!("#{id} dropped");
        }
    }
    Ok(())
}
