//! `/metrics` in the format the scraper asks for: OpenMetrics 1.0 or the classic text
//! format 0.0.4 (what `promtool check metrics` and most tools read). The registry
//! encodes OpenMetrics only; the classic format is derived from it.

/// One of the two exposition formats amrelay serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The format for an `Accept` header: the acceptable one with the highest `q`, the first
/// listed on a tie. Without a header, or with only `*/*`, the classic text format, as
/// the Go client library answers; an Accept naming neither gets it too (no 406: a
/// scraper that cannot read it says so more clearly than an empty answer would).
pub(crate) fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0_f32;
        let mut version = None;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.trim().parse().unwrap_or(0.0),
                "version" => version = Some(v.trim().trim_matches('"').to_owned()),
                _ => {}
            }
        }
        let format = match media.as_str() {
            // 0.0.1 differs from 1.0.0 in nothing amrelay's series use.
            "application/openmetrics-text"
                if version
                    .as_deref()
                    .is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
            {
                Format::OpenMetrics
            }
            // Any text/plain version: 0.0.4 is also valid 1.0.0 for ASCII names.
            "text/plain" | "text/*" | "*/*" => Format::Text,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, format));
        }
    }
    best.map_or(Format::Text, |(_, f)| f)
}

/// The classic text format 0.0.4 of an OpenMetrics exposition. What differs for the
/// series amrelay has: a counter's HELP and TYPE name its samples (`x_total`, not `x`),
/// an info metric becomes a gauge named `x_info`, OpenMetrics' other types fall back to
/// `untyped`, and `# UNIT`, `# EOF` and exemplars go.
pub(crate) fn to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The family whose HELP line waits for its TYPE line, which decides its name.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "gauge" | "histogram" | "summary" => ("", kind),
                _ => ("", "untyped"),
            };
            if let Some((h, text)) = help.take() {
                if h == name {
                    out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
                }
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
        } else if line.starts_with('#') {
            // # UNIT, # EOF
        } else if !line.is_empty() {
            // An exemplar follows ` # ` after the value; a label value may hold ` # `
            // too, so the search starts after the labels.
            let labels_end = sample_labels_end(line);
            match line[labels_end..].find(" # ") {
                Some(i) => out.push_str(&line[..labels_end + i]),
                None => out.push_str(line),
            }
            out.push('\n');
        }
    }
    out
}

/// Where a sample line's name and labels end (after the closing `}`, if any).
fn sample_labels_end(line: &str) -> usize {
    let Some(open) = line.find('{') else {
        return 0;
    };
    if line[..open].contains(' ') {
        return 0;
    }
    let mut escaped = false;
    let mut quoted = false;
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return open + i + 1,
            _ => {}
        }
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::{negotiate, to_text, Format};

    #[test]
    fn accept_headers_choose_the_format_by_q_then_order() {
        let cases: &[(Option<&str>, Format)] = &[
            (None, Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain; version=0.0.4"), Format::Text),
            (Some("text/plain"), Format::Text),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            // Prometheus 2.42's scrape header.
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                Format::OpenMetrics,
            ),
            // Prometheus 3 with the classic format preferred.
            (
                Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;version=2.0.0,text/plain;q=0.2"),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;q=0,*/*"),
                Format::Text,
            ),
            (Some("application/json"), Format::Text),
            (Some(""), Format::Text),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(*accept), *want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn classic_text_names_counters_by_their_samples_and_drops_openmetrics_only_lines() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{path=\"/x # y\"} 3 # {trace=\"1\"} 1.0\n\
                  # HELP a_up_seconds Up.\n# TYPE a_up_seconds gauge\n# UNIT a_up_seconds seconds\na_up_seconds 1.5\n\
                  # HELP a_build Build.\n# TYPE a_build info\na_build_info{v=\"1\"} 1\n# EOF\n";
        assert_eq!(
            to_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{path=\"/x # y\"} 3\n\
             # HELP a_up_seconds Up.\n# TYPE a_up_seconds gauge\na_up_seconds 1.5\n\
             # HELP a_build_info Build.\n# TYPE a_build_info gauge\na_build_info{v=\"1\"} 1\n"
        );
    }
}
