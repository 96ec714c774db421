//! zkcli: a shell for ZooKeeper (zkd or Apache ZooKeeper) that behaves like zkCli.sh of
//! Apache ZooKeeper 3.9: same command line, commands, output, error messages and exit
//! codes, so scripts and habits carry over.
//!
//! This module owns the command line (`-server`, `-timeout`, `-r`, `-waitforconnection`,
//! `-client-configuration`), the read loop (rustyline on a terminal, plain lines from a
//! pipe, or one command from the arguments), and the shell's own commands: history,
//! redo, printwatches, connect, quit. It never formats ZooKeeper data itself (fmt.rs)
//! and never runs ZooKeeper operations itself (commands.rs).
//!
//! Modules: `opts` (commons-cli style option parsing), `fmt` (output formats),
//! `session` (the connection and watch events), `commands` (the ZooKeeper commands),
//! `quota` (setquota, listquota, delquota), `reconfig`, `complete` (tab completion).

mod commands;
mod complete;
mod fmt;
mod opts;
mod quota;
mod reconfig;
mod session;

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use commands::{CliError, Ctx};
use session::{ConnectParams, Session, Shared};

/// What zkCli.sh's MyCommandOptions collects from the command line.
struct CmdLine {
    server: String,
    timeout: String,
    read_only: bool,
    wait_for_connection: bool,
    client_configuration: Option<String>,
    command: Option<Vec<String>>,
}

/// MyCommandOptions.parseOptions: known options anywhere before the command; unknown
/// ones starting with '-' are ignored; the first other word starts the command. An
/// option missing its value stops parsing with an error, keeping what came before
/// (zkCli.sh prints the error and goes on with those).
fn parse_cmdline(args: &[String]) -> (CmdLine, Option<String>) {
    let mut c = CmdLine {
        server: "localhost:2181".into(),
        timeout: "30000".into(),
        read_only: false,
        wait_for_connection: false,
        client_configuration: None,
        command: None,
    };
    let mut it = args.iter();
    while let Some(opt) = it.next() {
        let takes_value = matches!(
            opt.as_str(),
            "-server" | "-timeout" | "-client-configuration"
        );
        let value = if takes_value {
            match it.next() {
                Some(v) => v.clone(),
                None => {
                    return (
                        c,
                        Some(format!("Error: no argument found for option {opt}")),
                    )
                }
            }
        } else {
            String::new()
        };
        match opt.as_str() {
            "-server" => c.server = value,
            "-timeout" => c.timeout = value,
            "-r" => c.read_only = true,
            "-client-configuration" => c.client_configuration = Some(value),
            "-waitforconnection" => c.wait_for_connection = true,
            o if !o.starts_with('-') => {
                let mut cmd = vec![o.to_string()];
                cmd.extend(it.cloned());
                c.command = Some(cmd);
                break;
            }
            _ => {}
        }
    }
    (c, None)
}

struct Shell {
    rt: tokio::runtime::Runtime,
    params: ConnectParams,
    host: String,
    session: Option<Session>,
    shared: Arc<Shared>,
    history: HashMap<i64, String>,
    count: i64,
    exit_code: i32,
    /// The live session's client, for tab completion.
    current: complete::CurrentClient,
}

/// Where a failed connect leaves the prompt: the Java client would still be trying.
const NOT_CONNECTED: &str = "NOT_CONNECTED";

impl Shell {
    fn prompt(&self) -> String {
        let state = self
            .session
            .as_ref()
            .map(|s| s.state_name())
            .unwrap_or(NOT_CONNECTED);
        format!("[zk: {}({}) {}] ", self.host, state, self.count)
    }

    /// connectToZK: closes a live session first, then opens a new one.
    fn connect(&mut self, host: &str) -> Result<(), String> {
        if let Some(mut old) = self.session.take() {
            self.rt.block_on(old.close());
        }
        self.shared.clear_watches();
        self.host = host.to_string();
        let opened = self
            .rt
            .block_on(Session::open(host, &self.params, &self.shared));
        match opened {
            Ok(s) => {
                self.session = Some(s);
                Ok(())
            }
            Err(e) => Err(format!("Unable to connect to {host}: {e}")),
        }
    }

    fn execute_line(&mut self, line: &str) {
        let words = opts::split_line(line);
        if words.is_empty() {
            return;
        }
        self.history.insert(self.count, line.to_string());
        self.process_cmd(&words);
        self.count += 1;
        self.sync_current();
    }

    fn sync_current(&self) {
        let live = self
            .session
            .as_ref()
            .filter(|s| s.is_alive())
            .map(|s| s.client.clone());
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = live;
    }

    /// processCmd: runs a command and records its exit code (printing its error).
    fn process_cmd(&mut self, words: &[String]) {
        match self.process_zk_cmd(words) {
            Ok(()) => self.exit_code = 0,
            Err(e) => {
                self.exit_code = e.code;
                let _ = std::io::stdout().flush();
                eprintln!("{}", e.msg);
            }
        }
    }

    fn process_zk_cmd(&mut self, words: &[String]) -> Result<(), CliError> {
        let cmd = words[0].as_str();
        if commands::find(cmd).is_none() {
            eprint!("{}", commands::usage_listing());
            return Err(CliError {
                msg: format!("Command not found: Command not found {cmd}"),
                code: 127,
            });
        }
        match cmd {
            "quit" => {
                if let Some(s) = self.session.as_mut() {
                    self.rt.block_on(s.close());
                }
                let _ = std::io::stdout().flush();
                std::process::exit(self.exit_code);
            }
            "redo" if words.len() >= 2 => {
                let i = match java_decode(&words[1]) {
                    Some(i) => i,
                    None => {
                        eprintln!(
                            "Exception in thread \"main\" java.lang.NumberFormatException: For input string: \"{}\"",
                            words[1]
                        );
                        std::process::exit(1);
                    }
                };
                if self.count <= i || i < 0 {
                    return Err(CliError::new("Command index out of range"));
                }
                let line = self.history.get(&i).cloned().unwrap_or_default();
                let again = opts::split_line(&line);
                if again.first().map(String::as_str) == Some("redo") {
                    return Err(CliError::new("No redoing redos"));
                }
                self.history.insert(self.count, line);
                self.process_cmd(&again);
            }
            "history" => {
                let mut s = String::new();
                for i in (self.count - 10).max(0)..=self.count {
                    let line = self.history.get(&i).map(String::as_str).unwrap_or("null");
                    s.push_str(&format!("{i} - {line}\n"));
                }
                print!("{s}");
            }
            "printwatches" => {
                if words.len() == 1 {
                    let on = self.shared.print_watches.load(Ordering::SeqCst);
                    println!("printwatches is {}", if on { "on" } else { "off" });
                } else {
                    self.shared
                        .print_watches
                        .store(words[1] == "on", Ordering::SeqCst);
                }
            }
            "connect" => {
                let host = words.get(1).cloned().unwrap_or_else(|| self.host.clone());
                if let Err(e) = self.connect(&host) {
                    let _ = std::io::stdout().flush();
                    eprintln!("{e}");
                }
            }
            _ => {}
        }
        // As in ZooKeeperMain, the shell's own commands fall through to this check too,
        // so e.g. `history` on a closed session also says "Not connected".
        let alive = self.session.as_ref().is_some_and(|s| s.is_alive());
        if !alive {
            println!("Not connected");
            return Ok(());
        }
        if matches!(
            cmd,
            "quit" | "redo" | "history" | "printwatches" | "connect"
        ) {
            return Ok(());
        }
        let shared = self.shared.clone();
        let session = self.session.as_mut().expect("checked alive");
        self.rt.block_on(async {
            session.revive().await;
            if !session.is_alive() {
                println!("Not connected");
                return Ok(());
            }
            let mut ctx = Ctx {
                session,
                shared: &shared,
            };
            let r = commands::run(&mut ctx, words).await;
            ctx.session.flush_events().await;
            r
        })
    }
}

/// Java's Integer.decode, which `redo` uses: optional sign, then 0x/0X/# for hex, a
/// leading 0 for octal, else decimal.
fn java_decode(s: &str) -> Option<i64> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (radix, digits) =
        if let Some(h) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            (16, h)
        } else if let Some(h) = rest.strip_prefix('#') {
            (16, h)
        } else if rest.len() > 1 && rest.starts_with('0') {
            (8, &rest[1..])
        } else {
            (10, rest)
        };
    if digits.is_empty() || digits.starts_with(['-', '+']) {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i32::try_from(v).ok().map(i64::from)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cl, problem) = parse_cmdline(&args);
    if let Some(e) = problem {
        eprintln!("{e}");
    }
    let timeout_ms: u64 = match cl.timeout.parse() {
        Ok(t) => t,
        Err(_) => {
            eprintln!(
                "Exception in thread \"main\" java.lang.NumberFormatException: For input string: \"{}\"",
                cl.timeout
            );
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut shell = Shell {
        rt,
        params: ConnectParams {
            timeout_ms,
            read_only: cl.read_only,
        },
        host: cl.server.clone(),
        session: None,
        shared: Shared::new(),
        history: HashMap::new(),
        count: 0,
        exit_code: 0,
        current: Default::default(),
    };
    println!("Connecting to {}", cl.server);
    if let Some(f) = &cl.client_configuration {
        eprintln!(
            "zkcli: -client-configuration is not supported (TLS/SASL settings); ignoring {f}"
        );
    }
    // zkCli.sh prints its greeting while the connection is still being made, so the
    // SyncConnected event comes after it.
    if cl.command.is_none() {
        println!("Welcome to ZooKeeper!");
    }
    // The Java client connects in the background and commands wait for it (forever, if
    // the server never answers); this shell connects first (bounded by -timeout) and
    // says so when it cannot. Only a person at a terminal is left in the shell, to use
    // `connect`; a script gets exit code 1.
    if let Err(e) = shell.connect(&cl.server) {
        eprintln!("{e}");
        if cl.wait_for_connection || cl.command.is_some() || !std::io::stdin().is_terminal() {
            std::process::exit(1);
        }
    }
    if let Some(cmd) = cl.command {
        shell.process_cmd(&cmd);
        let code = shell.exit_code;
        if let Some(s) = shell.session.as_mut() {
            shell.rt.block_on(s.client.close()).ok();
        }
        std::process::exit(code);
    }
    if std::io::stdin().is_terminal() {
        interactive(&mut shell);
    } else {
        // No prompt when reading a pipe, as zkCli.sh without a terminal.
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            shell.execute_line(&line);
        }
    }
    // End of input ends the session too (zkCli.sh leaves it to expire).
    if let Some(s) = shell.session.as_mut() {
        if s.is_alive() {
            shell.rt.block_on(s.client.close()).ok();
        }
    }
    let _ = std::io::stdout().flush();
    std::process::exit(shell.exit_code);
}

fn interactive(shell: &mut Shell) {
    let mut rl = match rustyline::Editor::<complete::ZNodeCompleter, _>::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zkcli: no line editing ({e})");
            return;
        }
    };
    shell.sync_current();
    rl.set_helper(Some(complete::ZNodeCompleter {
        client: shell.current.clone(),
        rt: shell.rt.handle().clone(),
    }));
    loop {
        match rl.readline(&shell.prompt()) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                }
                shell.execute_line(&line);
            }
            // Ctrl-C drops the line being typed, as a shell does.
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redo_numbers_decode_as_java() {
        assert_eq!(java_decode("12"), Some(12));
        assert_eq!(java_decode("0x10"), Some(16));
        assert_eq!(java_decode("#f"), Some(15));
        assert_eq!(java_decode("010"), Some(8));
        assert_eq!(java_decode("-1"), Some(-1));
        assert_eq!(java_decode("x"), None);
        assert_eq!(java_decode("99999999999"), None);
    }

    #[test]
    fn command_line_like_zookeeper_main() {
        let a: Vec<String> = [
            "-timeout", "5000", "-r", "-x", "-server", "h:1", "ls", "-s", "/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (c, problem) = parse_cmdline(&a);
        assert!(problem.is_none());
        assert_eq!(c.server, "h:1");
        assert_eq!(c.timeout, "5000");
        assert!(c.read_only);
        assert_eq!(c.command.unwrap(), vec!["ls", "-s", "/"]);
        let (c, problem) = parse_cmdline(&["-r".to_string(), "-server".to_string()]);
        assert!(c.read_only);
        assert_eq!(
            problem.as_deref(),
            Some("Error: no argument found for option -server")
        );
    }
}
