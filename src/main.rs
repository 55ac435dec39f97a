//! Entry point: parse the command line, run it, map an error to one line on
//! stderr and an exit status (2: usage or config, 1: runtime).

use clap::error::ErrorKind;
use clap::Parser;

// glibc malloc showed up as a sixth of the server's profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match ticketctl::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and no command at all: clap's own text.
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("ticketctl: {}", ticketctl::cli::usage_error_line(&e));
            std::process::exit(2);
        }
    };
    if let Err(e) = ticketctl::run(cli) {
        eprintln!("ticketctl: {}", ticketctl::error_line(&e));
        std::process::exit(ticketctl::exit_code(&e));
    }
}
