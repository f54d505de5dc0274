//! Card numbers (PANs): found by their shape, since no name announces them, and masked to
//! their last four digits.

/// `text` with every digit of each card number (PAN) in it but the last four replaced by
/// `*` (`4111 1111 1111 1111` becomes `**** **** **** 1111`), as PCI DSS allows a PAN to be
/// shown; `None` when it holds none.
///
/// A card number is 13 to 19 digits that pass the Luhn check, written whole or in groups
/// split by single spaces or dashes, and not part of a longer word or number. Of a longer
/// run of groups (a number, then a year), the earliest longest run of whole groups that is
/// a card number is masked.
pub(crate) fn mask_card_numbers(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.len() < MIN_CARD_DIGITS
        || bytes.iter().filter(|b| b.is_ascii_digit()).count() < MIN_CARD_DIGITS
    {
        return None;
    }
    let mut out = String::new();
    let mut copied = 0;
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        // The groups of a run of digits split by one space or dash.
        groups.clear();
        let mut end = i;
        loop {
            let start = end;
            end += bytes[end..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            groups.push((start, end));
            let joined = matches!(bytes.get(end), Some(b' ' | b'-'))
                && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
            if !joined {
                break;
            }
            end += 1;
        }
        // Glued to a letter on its right, the run is part of a word (a hash, an id).
        if bytes.get(end).is_some_and(u8::is_ascii_alphabetic) {
            i = end;
            continue;
        }
        match card_number_in(bytes, &groups) {
            Some((start, stop)) => {
                out.push_str(&text[copied..start]);
                let digits = bytes[start..stop]
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .count();
                let mut masked = 0;
                for &b in &bytes[start..stop] {
                    if b.is_ascii_digit() && masked < digits - 4 {
                        out.push('*');
                        masked += 1;
                    } else {
                        out.push(char::from(b));
                    }
                }
                copied = stop;
                i = stop;
            }
            None => i = end,
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The fewest digits of a card number.
pub(super) const MIN_CARD_DIGITS: usize = 13;

/// The span of the earliest, then longest, run of whole `groups` that is a card number.
fn card_number_in(bytes: &[u8], groups: &[(usize, usize)]) -> Option<(usize, usize)> {
    for first in 0..groups.len() {
        let mut digits = 0;
        let mut found = None;
        for last in first..groups.len() {
            digits += groups[last].1 - groups[last].0;
            if digits > 19 {
                break;
            }
            let span = (groups[first].0, groups[last].1);
            if digits >= MIN_CARD_DIGITS && passes_luhn(&bytes[span.0..span.1]) {
                found = Some(span);
            }
        }
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The Luhn check of the digits of `text` (separators skipped).
fn passes_luhn(text: &[u8]) -> bool {
    let sum: u32 = text
        .iter()
        .rev()
        .filter(|b| b.is_ascii_digit())
        .enumerate()
        .map(|(i, b)| {
            let digit = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_masked_to_their_last_four_digits() {
        for (text, masked) in [
            ("4111111111111111", Some("************1111")),
            (
                "card 4111 1111 1111 1111 exp 12/29",
                Some("card **** **** **** 1111 exp 12/29"),
            ),
            (
                "pan=5500-0000-0000-0004&x=1",
                Some("pan=****-****-****-0004&x=1"),
            ),
            // Amex, 15 digits, and a 19-digit one.
            ("378282246310005", Some("***********0005")),
            ("6011000990139424", Some("************9424")),
            // Followed by a group that is no part of it.
            ("4111111111111111 2029", Some("************1111 2029")),
            // Not Luhn-valid, too short, too long, or part of a word or a longer number.
            ("4111111111111112", None),
            ("411111111111", None),
            ("41111111111111111111111", None),
            ("sha:a4111111111111111", None),
            ("4111111111111111abc", None),
            ("order 12345, total 99", None),
            ("", None),
        ] {
            assert_eq!(mask_card_numbers(text).as_deref(), masked, "{text}");
        }
        // Everywhere free text is scanned, with the other shapes.
        let names = crate::redact::SecretNames::default();
        assert_eq!(
            crate::redact::scan_free_text("paid with 4111111111111111, token=abc", &names)
                .as_deref(),
            Some("paid with ************1111, token=[REDACTED]")
        );
    }
}
