fn main() -> std::process::ExitCode {
    d1ctl::main()
}
