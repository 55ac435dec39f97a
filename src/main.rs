//! Entry point: parse the command line, run it, map an error to one line on
//! stderr and an exit status (2: usage or config, 1: runtime).

use clap::Parser;

fn main() {
    let cli = ticketctl::cli::Cli::parse();
    if let Err(e) = ticketctl::run(cli) {
        eprintln!("ticketctl: {e:#}");
        std::process::exit(ticketctl::exit_code(&e));
    }
}
