//! `render`: one action run against a request and fixtures (or the live backends), every
//! step printed; nothing is sent to the buyer app.

use beckn_adapter::backend::HttpTransport;

use super::{Dirs, load_or_exit};

pub async fn run(
    dirs: &Dirs,
    args: &beckn_adapter::dry_run::RenderArgs,
    live: bool,
) -> anyhow::Result<()> {
    let layout = dirs.layout();
    let set = load_or_exit(&layout);
    let http = HttpTransport::new();
    let live = live.then_some(&http as &dyn beckn_adapter::backend::Transport);
    match beckn_adapter::dry_run::render(&layout, &set, args, live).await {
        Ok(text) => {
            print!("{text}");
            Ok(())
        }
        Err(problem) => {
            eprintln!("{problem}");
            std::process::exit(1);
        }
    }
}
