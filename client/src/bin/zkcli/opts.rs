//! Command-argument parsing with the rules of commons-cli's DefaultParser, which every
//! zkCli.sh command uses.
//!
//! Owns splitting a command's words into options and positional arguments, and the
//! exact failure messages zkCli.sh prints for bad options. Never knows what an option
//! means: commands look their options up by letter.
//!
//! Why copy DefaultParser's rules rather than use clap: scripts written for zkCli.sh rely
//! on its quirks (options after the path, `-v3`, `-sw`, an option's value taken even when
//! it looks like a path, as in `set -v /a` which then lacks its data).

/// One option a command accepts: its letter, whether it takes a value, and the
/// description its usage text shows.
#[derive(Clone, Copy)]
pub struct OptSpec {
    pub name: char,
    pub has_arg: bool,
    pub desc: &'static str,
}

pub const fn flag(name: char, desc: &'static str) -> OptSpec {
    OptSpec {
        name,
        has_arg: false,
        desc,
    }
}

pub const fn valued(name: char, desc: &'static str) -> OptSpec {
    OptSpec {
        name,
        has_arg: true,
        desc,
    }
}

/// The parsed command line: positional args (the command name is `args[0]`, as in
/// zkCli.sh) and the options seen, each with its value if it takes one.
#[derive(Debug, Default)]
pub struct Parsed {
    pub args: Vec<String>,
    opts: Vec<(char, Option<String>)>,
}

impl Parsed {
    pub fn has(&self, c: char) -> bool {
        self.opts.iter().any(|(o, _)| *o == c)
    }

    /// The option letters in the order they were given.
    pub fn opt_order(&self) -> impl Iterator<Item = char> + '_ {
        self.opts.iter().map(|(c, _)| *c)
    }

    /// The value of the first occurrence of `c` (commons-cli's getOptionValue).
    pub fn value(&self, c: char) -> Option<&str> {
        self.opts
            .iter()
            .find(|(o, _)| *o == c)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn find(specs: &[OptSpec], name: &str) -> Option<OptSpec> {
    let mut chars = name.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    specs.iter().copied().find(|s| s.name == c)
}

fn is_negative_number(t: &str) -> bool {
    t.len() > 1 && t.starts_with('-') && t[1..].parse::<f64>().is_ok()
}

fn is_option(specs: &[OptSpec], t: &str) -> bool {
    t.len() > 1 && t.starts_with('-') && find(specs, &t[1..]).is_some()
}

fn unrecognized(t: &str) -> String {
    format!("org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: {t}")
}

fn missing(c: char) -> String {
    format!("org.apache.commons.cli.MissingArgumentException: Missing argument for option: {c}")
}

/// Parses `words` against `specs`. The error is the line zkCli.sh prints for it.
pub fn parse(specs: &[OptSpec], words: &[String]) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    // The option still waiting for its value.
    let mut pending: Option<char> = None;
    let mut only_args = false;
    for t in words {
        if let Some(c) = pending {
            if !is_option(specs, t) || is_negative_number(t) {
                p.opts.push((c, Some(t.clone())));
                pending = None;
                continue;
            }
            return Err(missing(c));
        }
        if only_args || t == "-" || !t.starts_with('-') {
            p.args.push(t.clone());
            continue;
        }
        if t == "--" {
            only_args = true;
            continue;
        }
        if t.starts_with("--") {
            return Err(unrecognized(t));
        }
        let body = &t[1..];
        if let Some(spec) = find(specs, body) {
            if spec.has_arg {
                pending = Some(spec.name);
            } else {
                p.opts.push((spec.name, None));
            }
            continue;
        }
        // Not an option by itself: "-v3" (option with its value attached) or "-sw"
        // (several flags in one word).
        let first = body.chars().next().unwrap_or('-');
        match find(specs, &first.to_string()) {
            Some(spec) if spec.has_arg => {
                p.opts
                    .push((spec.name, Some(body[first.len_utf8()..].to_string())));
            }
            Some(_) => {
                for (i, c) in body.char_indices() {
                    match find(specs, &c.to_string()) {
                        Some(spec) if spec.has_arg => {
                            let v = &body[i + c.len_utf8()..];
                            if v.is_empty() {
                                pending = Some(spec.name);
                            } else {
                                p.opts.push((spec.name, Some(v.to_string())));
                            }
                            break;
                        }
                        Some(spec) => p.opts.push((spec.name, None)),
                        None => return Err(unrecognized(t)),
                    }
                }
            }
            None => return Err(unrecognized(t)),
        }
    }
    if let Some(c) = pending {
        return Err(missing(c));
    }
    Ok(p)
}

/// commons-cli's HelpFormatter.printOptions with its defaults (left pad 1, description
/// pad 3), sorted by option letter, one line per option, no trailing newline.
pub fn options_help(specs: &[OptSpec]) -> String {
    let mut sorted: Vec<OptSpec> = specs.to_vec();
    // HelpFormatter sorts options by key, ignoring case.
    sorted.sort_by_key(|s| (s.name.to_ascii_lowercase(), s.name));
    let heads: Vec<String> = sorted
        .iter()
        .map(|s| {
            if s.has_arg {
                format!(" -{} <arg>", s.name)
            } else {
                format!(" -{}", s.name)
            }
        })
        .collect();
    let width = heads.iter().map(|h| h.len()).max().unwrap_or(0);
    let lines: Vec<String> = heads
        .iter()
        .zip(&sorted)
        .map(|(h, s)| format!("{h:<width$}   {}", s.desc).trim_end().to_string())
        .collect();
    lines.join("\n")
}

/// Splits a command line into words as ZooKeeperMain does: whitespace separates words,
/// and a word that starts with a quote runs to the matching quote, which is stripped.
pub fn split_line(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        let c = chars[i];
        if c == '"' || c == '\'' {
            if let Some(end) = chars[i + 1..].iter().position(|&x| x == c) {
                let end = i + 1 + end;
                words.push(chars[i + 1..end].iter().collect());
                i = end + 1;
                continue;
            }
            // No closing quote: the regex then matches a lone non-space run starting
            // after the quote's position; zkCli.sh skips the quote character itself.
            i += 1;
            continue;
        }
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        words.push(chars[start..i].iter().collect());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        split_line(s)
    }

    #[test]
    fn splits_quotes() {
        assert_eq!(
            w("set /a \"b c\"  'd e' f"),
            vec!["set", "/a", "b c", "d e", "f"]
        );
    }

    #[test]
    fn parses_like_default_parser() {
        let specs = [flag('s', "stat"), valued('v', "version")];
        let p = parse(&specs, &w("set /a d -s -v 3")).unwrap();
        assert_eq!(p.args, vec!["set", "/a", "d"]);
        assert!(p.has('s'));
        assert_eq!(p.value('v'), Some("3"));
        let p = parse(&specs, &w("set -v /a")).unwrap();
        assert_eq!(p.args, vec!["set"]);
        let p = parse(&specs, &w("set -sv3 /a")).unwrap();
        assert_eq!(p.value('v'), Some("3"));
        assert!(parse(&specs, &w("set -z /a")).is_err());
        assert!(parse(&specs, &w("set /a -v")).is_err());
    }

    #[test]
    fn help_layout() {
        let specs = [flag('s', "stats"), valued('v', "version")];
        assert_eq!(
            options_help(&specs),
            " -s         stats\n -v <arg>   version"
        );
    }
}
