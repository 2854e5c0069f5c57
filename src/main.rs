use clap::Parser;

fn main() {
    let cli = tkr_embed::cli::Cli::parse();
    if let Err(err) = tkr_embed::cli::run(cli) {
        // One line, the whole cause chain: "error: outer: inner".
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
