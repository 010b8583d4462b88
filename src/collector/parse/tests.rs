use super::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/exposition/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

#[test]
fn prometheus_own_metrics_parse_line_for_line() {
    // Captured from /usr/bin/prometheus 2.42 (Debian) /metrics.
    let body = fixture("prometheus-2.42.txt");
    let samples = parse(&body, Format::Text).unwrap();
    let sample_lines = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    assert_eq!(samples.len(), sample_lines);
    assert_eq!(
        find(&samples, "go_info", &[("version", "go1.19.8")]).value,
        1.0
    );
    assert_eq!(
        find(&samples, "go_memstats_alloc_bytes", &[]).value,
        7.386896e+06
    );
    let inf = find(
        &samples,
        "prometheus_http_request_duration_seconds_bucket",
        &[("handler", "/-/ready"), ("le", "+Inf")],
    );
    assert_eq!(inf.value, 1.0);
}

#[test]
fn amrelay_own_openmetrics_parses() {
    // Captured from `amrelay serve` /metrics (prometheus-client, OpenMetrics text).
    let body = fixture("amrelay.openmetrics.txt");
    let samples = parse(&body, Format::OpenMetrics).unwrap();
    let sample_lines = body.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(samples.len(), sample_lines);
    assert_eq!(
        find(
            &samples,
            "amrelay_webhooks_rejected_total",
            &[("reason", "too_large")]
        )
        .value,
        0.0
    );
}

#[test]
fn openmetrics_exemplars_timestamps_escapes_and_special_values() {
    let samples = parse(&fixture("openmetrics-spec.txt"), Format::OpenMetrics).unwrap();
    assert_eq!(samples.len(), 22);
    assert_eq!(find(&samples, "foo_bucket", &[("le", "10")]).value, 17.0);
    assert_eq!(find(&samples, "feature", &[("feature", "a")]).value, 1.0);
    let info = samples
        .iter()
        .find(|s| s.name == "build_info_info")
        .unwrap();
    assert_eq!(
        info.labels[1],
        (
            "escaped".to_string(),
            "a \"quoted\" \\ back\nslash, with = and }".to_string()
        )
    );
    assert!(find(&samples, "nan_and_inf", &[("kind", "nan")])
        .value
        .is_nan());
    assert_eq!(
        find(&samples, "nan_and_inf", &[("kind", "pos")]).value,
        f64::INFINITY
    );
    assert_eq!(
        find(&samples, "nan_and_inf", &[("kind", "neg")]).value,
        f64::NEG_INFINITY
    );
}

#[test]
fn text_format_details() {
    let body = "\
# a free comment
  indented{a=\"1\" , b = \"2\",} 3 1700000000000
tabs\t4
colon:name 5e-3
empty_label{a=\"\",b=\"x\"} 1
";
    let s = parse(body, Format::Text).unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(
        s[0].labels,
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    assert_eq!(s[1].value, 4.0);
    assert_eq!(s[2].name, "colon:name");
    assert_eq!(s[3].labels, vec![("b".into(), "x".into())]);
}

#[test]
fn the_content_type_picks_the_format() {
    assert_eq!(
        Format::from_content_type(Some(
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type(Some("text/plain; version=0.0.4")),
        Format::Text
    );
    assert_eq!(Format::from_content_type(None), Format::Text);
}

#[test]
fn malformed_lines_fail_the_scrape_and_name_the_line() {
    let cases: &[(&str, Format, usize, &str)] = &[
        (
            "ok 1\n<html>oops</html>\n",
            Format::Text,
            2,
            "expected a metric name",
        ),
        ("a{b=\"1\" 2\n", Format::Text, 1, "expected ',' or '}'"),
        ("a{b=1} 2\n", Format::Text, 1, "double-quoted"),
        ("a{b=\"1} 2\n", Format::Text, 1, "no closing quote"),
        ("a{b=\"\\x\"} 2\n", Format::Text, 1, "unknown escape"),
        ("a{b=\"1\",b=\"2\"} 2\n", Format::Text, 1, "appears twice"),
        ("a\n", Format::Text, 1, "expected a space"),
        ("a one\n", Format::Text, 1, "expected a number"),
        ("a 1 soon\n", Format::Text, 1, "timestamp"),
        ("a 1 1.5\n", Format::Text, 1, "timestamp"),
        ("a{1b=\"x\"} 1\n", Format::Text, 1, "label name"),
        ("a 1\n", Format::OpenMetrics, 1, "# EOF"),
        (
            "a 1\n# EOF\nb 2\n",
            Format::OpenMetrics,
            3,
            "after \"# EOF\"",
        ),
        ("a 1\n\n# EOF\n", Format::OpenMetrics, 2, "empty lines"),
        ("a 1 # nope\n# EOF\n", Format::OpenMetrics, 1, "exemplar"),
    ];
    for (body, format, line, want) in cases {
        let e = parse(body, *format).expect_err(body);
        assert_eq!(e.line, *line, "{body:?}: {e}");
        assert!(e.message.contains(want), "{body:?}: {e}");
    }
}

#[test]
fn binary_garbage_is_an_error_not_a_panic() {
    let garbage: String = (0..4096u32)
        .map(|i| char::from_u32((i * 7919) % 0x2FF + 1).unwrap_or('?'))
        .collect();
    assert!(parse(&garbage, Format::Text).is_err());
    assert!(parse(&garbage, Format::OpenMetrics).is_err());
    // Multi-byte characters where ASCII is expected.
    assert!(parse("é 1\n", Format::Text).is_err());
    assert!(parse("a{é=\"1\"} 1\n", Format::Text).is_err());
    assert!(parse("a{b=\"é\"} 1é\n", Format::Text).is_err());
}
