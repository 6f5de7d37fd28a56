//! A tiny HTML writer that makes escaping the default: markup can only come from string
//! literals (`&'static str`), and everything else goes through [`Html::text`], which escapes it.
//! Incident text holds untrusted log lines and alert annotations; none of it can become markup.

use std::fmt::{Display, Write};

#[derive(Default)]
pub struct Html(String);

impl Html {
    pub fn new() -> Self {
        Html(String::with_capacity(16 << 10))
    }

    /// Markup written in this crate's source: a literal, never data.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Any value, escaped for element content and for double- or single-quoted attributes.
    pub fn text(&mut self, value: impl Display) -> &mut Self {
        let mut plain = String::new();
        let _ = write!(plain, "{value}");
        escape_into(&mut self.0, &plain);
        self
    }

    /// `open`, the escaped `value`, `close`: an element with text inside.
    pub fn el(
        &mut self,
        open: &'static str,
        value: impl Display,
        close: &'static str,
    ) -> &mut Self {
        self.raw(open).text(value).raw(close)
    }

    pub fn finish(self) -> String {
        self.0
    }
}

/// Escapes the five characters that can end text or an attribute value.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_markup_is_not() {
        let mut h = Html::new();
        h.raw("<p title=\"")
            .text("\"><script>alert('x')</script>")
            .raw("\">")
            .el("<b>", "a & b", "</b>")
            .raw("</p>");
        assert_eq!(
            h.finish(),
            "<p title=\"&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\"><b>a &amp; b</b></p>"
        );
        let mut h = Html::new();
        h.text("<img src=x onerror=y>").text(" plain-name_1");
        assert_eq!(h.finish(), "&lt;img src=x onerror=y&gt; plain-name_1");
    }
}
