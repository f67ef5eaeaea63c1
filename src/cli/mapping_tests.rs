//! `test`: the mapping tests of FLOWS/tests/*.yaml, run offline.

use super::{Dirs, load_or_exit};

pub async fn run(dirs: &Dirs, filter: Option<&str>) -> anyhow::Result<()> {
    let layout = dirs.layout();
    let set = load_or_exit(&layout);
    match beckn_adapter::mapping_test::run_all(&layout, &set, filter).await {
        Ok(report) => {
            print!("{report}");
            if report.failed() > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Err(problem) => {
            eprintln!("{problem}");
            std::process::exit(1);
        }
    }
}
