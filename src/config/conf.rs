//! The ceph.conf reader: syntax-checks a whole file and returns its
//! `key = value` lines with their sections and line numbers; and the
//! sections a daemon reads.
//!
//! # ceph.conf syntax (Ceph's `ConfFile` grammar in `src/common/ConfUtils.cc`)
//!
//! * `[name]` starts a section; the name is every character up to `]`
//!   (white space included, not trimmed; `\]` escapes a bracket). `[]`, a
//!   missing `]`, or text other than a comment after `]` is an error.
//! * `key = value`; the key is one or more words separated by blanks and may
//!   not contain `[`, `#` or `;`.
//! * `#` and `;` start a comment, on their own line or after a value.
//! * A backslash before a line break joins the next line (outside quotes);
//!   a backslash before any other character makes that character literal
//!   (`\#`, `\;`, `\"`, `\\`).
//! * A value may be enclosed in double or single quotes; text after the
//!   closing quote other than a comment is an error, a missing closing quote
//!   is an error.
//! * Values are trimmed of surrounding white space *after* unquoting (Ceph's
//!   `conf_line_t` does this, so quotes do not preserve edge spaces).
//! * Within one section the last occurrence of a key wins; sections with the
//!   same name are merged.
//! * A daemon `type.id` reads each option from `[type.id]`, else `[type]`,
//!   else `[global]` (`md_config_t::_get_my_sections` in
//!   `src/common/config.cc`). Only the value that wins is parsed, so a bad
//!   value that is overridden for this daemon does not fail its load.
//!
//! Deliberate, compatible extensions (files Ceph accepts mean the same here):
//! `#` and `;` inside quotes are literal (Ceph 16 rejects them unless
//! escaped); `key = value` lines before the first section header belong to
//! `[global]` (Ceph 16 accepts that only for a file of exactly one line);
//! the last line need not end with a newline (Ceph 16 requires it); a UTF-8
//! byte-order mark is skipped. Continuations inside quotes are not supported
//! (Ceph does not support them either).

use super::{is_c_space, normalize_key};
use crate::error::{Error, Result};

/// One `key = value` line of a conf file.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ConfEntry {
    pub(super) section: String,
    /// Normalized key.
    pub(super) key: String,
    /// Unquoted, unescaped, trimmed value.
    pub(super) value: String,
    /// 1-based line where the key starts.
    pub(super) line: usize,
}

/// Sections read for a daemon name, lowest priority first.
pub(super) fn sections_for(name: &str) -> Vec<String> {
    let name = name.trim();
    let mut v = vec!["global".to_owned()];
    if name.is_empty() || name == "global" {
        return v;
    }
    if let Some((ty, _id)) = name.split_once('.') {
        if !ty.is_empty() && ty != "global" {
            v.push(ty.to_owned());
        }
    }
    v.push(name.to_owned());
    v
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    /// 1-based current line.
    line: usize,
    origin: &'a str,
    lines: Vec<&'a str>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, origin: &'a str) -> Self {
        Scanner {
            chars: text.chars().collect(),
            pos: 0,
            line: 1,
            origin,
            lines: text
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    /// Length of the line break at `p` ("\n" or "\r\n"), 0 if none.
    fn eol_len_at(&self, p: usize) -> usize {
        match self.chars.get(p) {
            Some('\n') => 1,
            Some('\r') if self.chars.get(p + 1) == Some(&'\n') => 2,
            _ => 0,
        }
    }

    fn at_eol(&self) -> bool {
        self.eol_len_at(self.pos) > 0
    }

    fn bump_eol(&mut self) {
        let n = self.eol_len_at(self.pos);
        if n > 0 {
            self.pos += n;
            self.line += 1;
        }
    }

    /// A backslash immediately followed by a line break.
    fn at_continuation(&self) -> bool {
        self.peek() == Some('\\') && self.eol_len_at(self.pos + 1) > 0
    }

    fn skip_continuation(&mut self) {
        self.pos += 1;
        self.bump_eol();
    }

    /// Skip spaces, tabs and line continuations.
    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ') | Some('\t') => self.pos += 1,
                Some('\\') if self.at_continuation() => self.skip_continuation(),
                _ => break,
            }
        }
    }

    fn skip_to_eol(&mut self) {
        while self.peek().is_some() && !self.at_eol() {
            self.pos += 1;
        }
    }

    fn rest_of_line(&self) -> String {
        let mut p = self.pos;
        let mut s = String::new();
        while let Some(&c) = self.chars.get(p) {
            if self.eol_len_at(p) > 0 {
                break;
            }
            s.push(c);
            p += 1;
        }
        s.trim_end_matches(is_c_space).to_owned()
    }

    fn line_text(&self, line: usize) -> &str {
        self.lines
            .get(line.wrapping_sub(1))
            .map(|l| l.trim())
            .unwrap_or("")
    }

    fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        Error::inval(format!("{}:{}: {}", self.origin, line, msg))
    }

    /// After a header or a value: blanks, an optional comment, then a line
    /// break or the end of the text.
    fn end_of_statement(&mut self, after: &str) -> Result<()> {
        self.skip_blanks();
        match self.peek() {
            None => Ok(()),
            Some('#') | Some(';') => {
                self.skip_to_eol();
                self.bump_eol();
                Ok(())
            }
            Some(_) if self.at_eol() => {
                self.bump_eol();
                Ok(())
            }
            Some(_) => Err(self.err(
                self.line,
                format!("unexpected text {:?} after {after}", self.rest_of_line()),
            )),
        }
    }

    /// `[name]`; the cursor is on `[`.
    fn heading(&mut self, line: usize) -> Result<String> {
        let malformed = |sc: &Self, why: &str| {
            sc.err(
                line,
                format!("malformed section header {:?}: {why}", sc.line_text(line)),
            )
        };
        self.pos += 1;
        let mut name = String::new();
        loop {
            match self.peek() {
                None => return Err(malformed(self, "missing closing ']'")),
                Some(_) if self.at_eol() => return Err(malformed(self, "missing closing ']'")),
                Some('#') | Some(';') => {
                    return Err(malformed(
                        self,
                        "'#' and ';' start a comment; write \\# or \\; inside a section name",
                    ))
                }
                Some(']') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') if self.at_continuation() => self.skip_continuation(),
                Some('\\') => match self.peek2() {
                    Some(c) => {
                        name.push(c);
                        self.pos += 2;
                    }
                    None => {
                        name.push('\\');
                        self.pos += 1;
                    }
                },
                Some(c) => {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        if name.is_empty() {
            return Err(malformed(self, "empty section name"));
        }
        self.end_of_statement(&format!("section header [{name}]"))?;
        Ok(name)
    }

    /// `key = value`; the cursor is on the first character of the key.
    fn key_value(&mut self, line: usize, section: &str) -> Result<ConfEntry> {
        let mut raw_key = String::new();
        loop {
            match self.peek() {
                Some('=') => {
                    self.pos += 1;
                    break;
                }
                Some('[') => {
                    return Err(self.err(
                        line,
                        format!(
                            "'[' is not allowed in an option name: {:?}",
                            self.line_text(line)
                        ),
                    ))
                }
                None | Some('#') | Some(';') => return Err(self.not_a_statement(line)),
                Some(_) if self.at_eol() => return Err(self.not_a_statement(line)),
                Some('\\') if self.at_continuation() => self.skip_continuation(),
                Some('\\') => {
                    // Ceph keeps the key's raw text, escapes included.
                    raw_key.push('\\');
                    self.pos += 1;
                    if let Some(c) = self.peek() {
                        raw_key.push(c);
                        self.pos += 1;
                    }
                }
                Some(c) => {
                    raw_key.push(c);
                    self.pos += 1;
                }
            }
        }
        let key = normalize_key(&raw_key);
        if key.is_empty() {
            return Err(self.err(
                line,
                format!("missing option name before '=': {:?}", self.line_text(line)),
            ));
        }
        self.skip_blanks();
        let value = match self.peek() {
            Some(q @ ('"' | '\'')) => self.quoted(q, line, &key)?,
            _ => self.unquoted(&key)?,
        };
        Ok(ConfEntry {
            section: section.to_owned(),
            key,
            value: value.trim_matches(is_c_space).to_owned(),
            line,
        })
    }

    fn not_a_statement(&self, line: usize) -> Error {
        self.err(
            line,
            format!(
                "expected \"key = value\", a [section] header, a comment or a blank line, got {:?}",
                self.line_text(line)
            ),
        )
    }

    fn quoted(&mut self, q: char, line: usize, key: &str) -> Result<String> {
        self.pos += 1;
        let mut v = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.err(
                        line,
                        format!("unterminated quoted value of {key}: missing closing {q}"),
                    ))
                }
                Some(_) if self.at_eol() => {
                    return Err(self.err(
                        line,
                        format!("unterminated quoted value of {key}: missing closing {q}"),
                    ))
                }
                Some(c) if c == q => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => match self.peek2() {
                    Some(c) if self.eol_len_at(self.pos + 1) == 0 => {
                        v.push(c);
                        self.pos += 2;
                    }
                    _ => {
                        v.push('\\');
                        self.pos += 1;
                    }
                },
                Some(c) => {
                    v.push(c);
                    self.pos += 1;
                }
            }
        }
        self.end_of_statement(&format!("the closing quote of {key}"))?;
        Ok(v)
    }

    fn unquoted(&mut self, key: &str) -> Result<String> {
        let mut v = String::new();
        loop {
            match self.peek() {
                None | Some('#') | Some(';') => break,
                Some(_) if self.at_eol() => break,
                Some('\\') if self.at_continuation() => self.skip_continuation(),
                Some('\\') => match self.peek2() {
                    Some(c) => {
                        v.push(c);
                        self.pos += 2;
                    }
                    None => {
                        v.push('\\');
                        self.pos += 1;
                    }
                },
                Some(c) => {
                    v.push(c);
                    self.pos += 1;
                }
            }
        }
        self.end_of_statement(&format!("the value of {key}"))?;
        Ok(v)
    }
}

/// Syntax-check the whole text and return its `key = value` lines.
pub(super) fn parse_conf(text: &str, origin: &str) -> Result<Vec<ConfEntry>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sc = Scanner::new(text, origin);
    let mut section = "global".to_owned();
    let mut out = Vec::new();
    loop {
        sc.skip_blanks();
        let line = sc.line;
        match sc.peek() {
            None => break,
            Some('#') | Some(';') => {
                sc.skip_to_eol();
                sc.bump_eol();
            }
            Some(_) if sc.at_eol() => sc.bump_eol(),
            Some('[') => section = sc.heading(line)?,
            Some(_) => out.push(sc.key_value(line, &section)?),
        }
    }
    Ok(out)
}
