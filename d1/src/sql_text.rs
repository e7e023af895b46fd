//! Splitting SQL text into statements without parsing it, in one pass.
//!
//! The scanner knows exactly as much SQL as it needs to find where a statement ends: string
//! literals, quoted identifiers, comments, and `CREATE [TEMP] TRIGGER ... BEGIN ... END;`
//! bodies, whose inner semicolons do not end the statement. It is the same idea as SQLite's
//! `sqlite3_complete`: a small state machine over tokens, where `END` ends a trigger only when
//! it directly follows a semicolon inside the body. It works on bytes fed in pieces of any
//! size, so an import of any size is split in time linear in its length.

/// Where a statement ends in the text fed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatementEnd {
    /// Offset just past the terminating `;` (counted from the first byte ever fed).
    pub end: u64,
    /// Whether the statement holds anything besides whitespace and comments.
    pub has_content: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Normal,
    /// Inside a quoted run; the byte is the closing quote.
    Quoted(u8),
    /// Just saw the closing quote of a quoted run: a doubled quote continues it.
    QuoteEnd(u8),
    Dash,
    Slash,
    LineComment,
    BlockComment,
    BlockStar,
}

/// Token-level states, after `sqlite3_complete`'s table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stmt {
    Start,
    Normal,
    Explain,
    Create,
    Trigger,
    TriggerSemi,
    TriggerEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Semi,
    Other,
    Explain,
    Create,
    Temp,
    Trigger,
    End,
}

/// The incremental scanner.
#[derive(Debug)]
pub(crate) struct Scanner {
    lex: Lex,
    stmt: Stmt,
    word: [u8; 12],
    word_len: usize,
    in_word: bool,
    has_content: bool,
    offset: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

impl Scanner {
    pub fn new() -> Self {
        Self {
            lex: Lex::Normal,
            stmt: Stmt::Start,
            word: [0; 12],
            word_len: 0,
            in_word: false,
            has_content: false,
            offset: 0,
        }
    }

    /// Feeds `bytes`; appends the end of every statement completed inside them to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<StatementEnd>) {
        for &b in bytes {
            self.offset += 1;
            self.byte(b, out);
        }
    }

    /// Ends the input: whether text after the last statement end holds a statement
    /// (an unterminated last statement).
    pub fn finish(&mut self) -> bool {
        if self.in_word {
            self.end_word_silently();
        }
        let trailing = self.has_content;
        self.has_content = false;
        self.stmt = Stmt::Start;
        self.lex = Lex::Normal;
        trailing
    }

    fn byte(&mut self, b: u8, out: &mut Vec<StatementEnd>) {
        match self.lex {
            Lex::Normal => self.normal(b, out),
            Lex::Quoted(q) => {
                if b == q {
                    self.lex = if q == b']' {
                        Lex::Normal
                    } else {
                        Lex::QuoteEnd(q)
                    };
                }
            }
            Lex::QuoteEnd(q) => {
                if b == q {
                    self.lex = Lex::Quoted(q);
                } else {
                    self.lex = Lex::Normal;
                    self.normal(b, out);
                }
            }
            Lex::Dash => {
                if b == b'-' {
                    self.lex = Lex::LineComment;
                } else {
                    self.lex = Lex::Normal;
                    self.token(Token::Other, out);
                    self.normal(b, out);
                }
            }
            Lex::Slash => {
                if b == b'*' {
                    self.lex = Lex::BlockComment;
                } else {
                    self.lex = Lex::Normal;
                    self.token(Token::Other, out);
                    self.normal(b, out);
                }
            }
            Lex::LineComment => {
                if b == b'\n' {
                    self.lex = Lex::Normal;
                }
            }
            Lex::BlockComment => {
                if b == b'*' {
                    self.lex = Lex::BlockStar;
                }
            }
            Lex::BlockStar => {
                self.lex = match b {
                    b'/' => Lex::Normal,
                    b'*' => Lex::BlockStar,
                    _ => Lex::BlockComment,
                };
            }
        }
    }

    fn normal(&mut self, b: u8, out: &mut Vec<StatementEnd>) {
        if is_ident_byte(b) {
            if !self.in_word {
                self.in_word = true;
                self.word_len = 0;
            }
            if self.word_len < self.word.len() {
                self.word[self.word_len] = b.to_ascii_uppercase();
            }
            self.word_len += 1;
            return;
        }
        if self.in_word {
            self.end_word(out);
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => {}
            b'\'' | b'"' | b'`' => {
                self.token(Token::Other, out);
                self.lex = Lex::Quoted(b);
            }
            b'[' => {
                self.token(Token::Other, out);
                self.lex = Lex::Quoted(b']');
            }
            b'-' => self.lex = Lex::Dash,
            b'/' => self.lex = Lex::Slash,
            b';' => self.token(Token::Semi, out),
            _ => self.token(Token::Other, out),
        }
    }

    fn classify_word(&self) -> Token {
        let w = &self.word[..self.word_len.min(self.word.len())];
        if self.word_len > self.word.len() {
            return Token::Other;
        }
        match w {
            b"EXPLAIN" => Token::Explain,
            b"CREATE" => Token::Create,
            b"TEMP" | b"TEMPORARY" => Token::Temp,
            b"TRIGGER" => Token::Trigger,
            b"END" => Token::End,
            _ => Token::Other,
        }
    }

    fn end_word(&mut self, out: &mut Vec<StatementEnd>) {
        self.in_word = false;
        let t = self.classify_word();
        self.token(t, out);
    }

    fn end_word_silently(&mut self) {
        self.in_word = false;
        self.has_content = true;
    }

    fn token(&mut self, t: Token, out: &mut Vec<StatementEnd>) {
        use Stmt::*;
        if t != Token::Semi {
            self.has_content = true;
        }
        self.stmt = match (self.stmt, t) {
            (Trigger | TriggerSemi, Token::Semi) => TriggerSemi,
            (_, Token::Semi) => {
                out.push(StatementEnd {
                    end: self.offset,
                    has_content: self.has_content,
                });
                self.has_content = false;
                Start
            }
            (Start, Token::Explain) => Explain,
            (Start | Explain, Token::Create) => Create,
            (Start | Explain | Normal, _) => Normal,
            (Create, Token::Temp) => Create,
            (Create, Token::Trigger) => Trigger,
            (Create, _) => Normal,
            (Trigger, _) => Trigger,
            (TriggerSemi, Token::End) => TriggerEnd,
            (TriggerSemi | TriggerEnd, _) => Trigger,
        };
    }
}

/// Splits `sql` into its statements (each with its terminating `;` when it has one),
/// dropping pieces that hold only whitespace and comments.
pub(crate) fn split(sql: &str) -> Vec<&str> {
    let mut scanner = Scanner::new();
    let mut ends = Vec::new();
    scanner.push(sql.as_bytes(), &mut ends);
    let mut out = Vec::with_capacity(ends.len() + 1);
    let mut start = 0usize;
    for e in ends {
        let end = e.end as usize;
        if e.has_content {
            out.push(sql[start..end].trim());
        }
        start = end;
    }
    if scanner.finish() {
        out.push(sql[start..].trim());
    }
    out
}

/// The first keyword of a statement, upper-cased (`SELECT`, `INSERT`, `BEGIN`, ...), skipping
/// whitespace, comments and parentheses.
pub(crate) fn first_keyword(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'(' => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                return Some(sql[start..i].to_ascii_uppercase());
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_separates_statements_and_keeps_quoted_semicolons() {
        let s = "SELECT ';'; SELECT \"a;b\" FROM t -- c;\n; /* x; */ SELECT 3";
        assert_eq!(
            split(s),
            vec![
                "SELECT ';';",
                "SELECT \"a;b\" FROM t -- c;\n;",
                "/* x; */ SELECT 3"
            ]
        );
    }

    #[test]
    fn split_keeps_trigger_bodies_whole() {
        let s = "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = CASE WHEN 1 THEN 2 END; DELETE FROM u; END; SELECT 1;";
        let parts = split(s);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with("END;"));
        assert_eq!(parts[1], "SELECT 1;");
    }

    #[test]
    fn split_drops_comment_only_pieces_and_handles_doubled_quotes() {
        assert_eq!(split("-- nothing\n ; ;"), Vec::<&str>::new());
        assert_eq!(split("SELECT 'it''s;'; "), vec!["SELECT 'it''s;';"]);
    }

    #[test]
    fn scanner_finds_the_same_ends_when_fed_byte_by_byte() {
        let s = "INSERT INTO t VALUES('a;b');CREATE TRIGGER x BEGIN SELECT 1; END;SELECT [a;b];";
        let mut whole = Vec::new();
        Scanner::new().push(s.as_bytes(), &mut whole);
        let mut pieces = Vec::new();
        let mut sc = Scanner::new();
        for b in s.as_bytes() {
            sc.push(std::slice::from_ref(b), &mut pieces);
        }
        assert_eq!(whole, pieces);
        assert_eq!(whole.len(), 3);
    }

    #[test]
    fn first_keyword_skips_comments() {
        assert_eq!(
            first_keyword("  -- hi\n /* x */ begin transaction").as_deref(),
            Some("BEGIN")
        );
        assert_eq!(first_keyword("(select 1)").as_deref(), Some("SELECT"));
        assert_eq!(first_keyword("  "), None);
    }
}
