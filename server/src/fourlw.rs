//! Four-letter words (ZooKeeper's FourLetterCommands and command/*Command classes).
//!
//! Owns recognising a 4lw on a fresh connection and producing its text. Never changes
//! server state except for the reset commands (crst, srst).

use crate::core::Core;

pub const COMMANDS: &[&str] = &[
    "ruok", "stat", "srvr", "mntr", "conf", "cons", "crst", "srst", "envi", "dump", "wchs", "wchc",
    "wchp", "dirs", "isro", "gtmk", "stmk",
];

pub fn is_command(cmd: &str) -> bool {
    COMMANDS.contains(&cmd)
}

pub fn execute(core: &mut Core, cmd: &str, _now_ms: i64) -> String {
    if !core.config.four_letter_whitelist.allows(cmd) {
        return format!("{cmd} is not executed because it is not in the whitelist.\n");
    }
    match cmd {
        "ruok" => "imok".to_string(),
        "isro" => "rw".to_string(),
        _ => format!("{cmd} is not implemented yet\n"),
    }
}
