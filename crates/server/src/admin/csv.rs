//! CSV as operators' spreadsheets read and write it (RFC 4180): fields with a comma, a
//! quote or a line break are quoted, quotes doubled.

/// One CSV line (with its line break) of `fields`.
pub fn line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut out = fields
        .iter()
        .map(|field| quoted(field.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    out
}

fn quoted(field: &str) -> String {
    // A field a spreadsheet would run as a formula is written as text.
    let field = match field.starts_with(['=', '+', '-', '@']) {
        true => format!("'{field}"),
        false => field.to_owned(),
    };
    match field.contains([',', '"', '\r', '\n']) {
        true => format!("\"{}\"", field.replace('"', "\"\"")),
        false => field,
    }
}

/// Why a CSV document could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsvError {
    #[error("line {0}: a quoted field is not closed")]
    Unclosed(usize),
    #[error("line {0}: text after a closing quote")]
    AfterQuote(usize),
}

/// The records of a CSV document, each with the line it starts on; blank lines are
/// skipped.
pub fn records(text: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let starts_on = line;
        let mut fields = vec![String::new()];
        loop {
            match chars.next() {
                None => break,
                Some('\n') => {
                    line += 1;
                    break;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some(',') => fields.push(String::new()),
                Some('"') if fields.last().is_some_and(String::is_empty) => loop {
                    match chars.next() {
                        None => return Err(CsvError::Unclosed(starts_on)),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            push(&mut fields, '"');
                        }
                        Some('"') => match chars.peek() {
                            None | Some(',' | '\r' | '\n') => break,
                            Some(_) => return Err(CsvError::AfterQuote(line)),
                        },
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            push(&mut fields, c);
                        }
                    }
                },
                Some(c) => push(&mut fields, c),
            }
        }
        if !(fields.len() == 1 && fields[0].trim().is_empty()) {
            records.push((starts_on, fields));
        }
    }
    Ok(records)
}

fn push(fields: &mut [String], c: char) {
    if let Some(last) = fields.last_mut() {
        last.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let fields = ["IMEI:1", "a,b", "say \"hi\"", "two\nlines", ""];
        let text = line(&fields) + &line(&["x"]);
        let read = records(&text).unwrap();
        assert_eq!(read[0], (1, fields.map(str::to_owned).to_vec()));
        assert_eq!(read[1], (3, vec!["x".to_owned()]));
    }

    #[test]
    fn a_formula_is_written_as_text() {
        assert_eq!(
            line(&["=HYPERLINK(\"x\")", "-1"]),
            "\"'=HYPERLINK(\"\"x\"\")\",'-1\r\n"
        );
    }

    #[test]
    fn blank_lines_are_skipped_and_broken_quotes_refused() {
        assert_eq!(
            records("a,b\n\n c \n").unwrap(),
            vec![(1, vec!["a".into(), "b".into()]), (3, vec![" c ".into()])]
        );
        assert_eq!(records("a\n\"open"), Err(CsvError::Unclosed(2)));
        assert_eq!(records("\"x\"y"), Err(CsvError::AfterQuote(1)));
    }
}
