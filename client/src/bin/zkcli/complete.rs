//! Tab completion on a terminal, as zkCli.sh's JLineZNodeCompleter: a word starting
//! with '/' completes to znode paths (children listed from the server), any other word
//! to command names.
//!
//! Owns the rustyline helper. Never changes the tree and never sets watches; a failed
//! or slow listing just offers nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use zkd_client::Client;

use crate::commands::COMMANDS;

/// The shell's current session, swapped by the shell on connect/close.
pub type CurrentClient = Arc<Mutex<Option<Client>>>;

pub struct ZNodeCompleter {
    pub client: CurrentClient,
    pub rt: tokio::runtime::Handle,
}

impl ZNodeCompleter {
    fn znodes(&self, token: &str) -> Vec<String> {
        let client = match self
            .client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            Some(c) => c,
            None => return Vec::new(),
        };
        let idx = token.rfind('/').map(|i| i + 1).unwrap_or(0);
        let prefix = &token[idx..];
        // Only the root ends in '/', so every other directory drops its trailing one.
        let dir = if idx == 1 { "/" } else { &token[..idx - 1] };
        let listing = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), client.get_children(dir, false)).await
        });
        let mut out: Vec<String> = match listing {
            Ok(Ok(children)) => children
                .into_iter()
                .filter(|c| c.starts_with(prefix))
                .map(|c| {
                    if idx == 1 {
                        format!("/{c}")
                    } else {
                        format!("{dir}/{c}")
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        out.sort();
        out
    }
}

impl Completer for ZNodeCompleter {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let start = before
            .rfind(char::is_whitespace)
            .map(|i| i + before[i..].chars().next().map_or(1, char::len_utf8))
            .unwrap_or(0);
        let token = &before[start..];
        let candidates = if token.starts_with('/') {
            self.znodes(token)
        } else {
            COMMANDS
                .iter()
                .map(|c| c.name)
                .filter(|n| n.starts_with(token))
                .map(str::to_string)
                .collect()
        };
        Ok((start, candidates))
    }
}

impl Hinter for ZNodeCompleter {
    type Hint = String;
}
impl Highlighter for ZNodeCompleter {}
impl Validator for ZNodeCompleter {}
impl Helper for ZNodeCompleter {}
