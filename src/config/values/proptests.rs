//! Properties of the config's value parsers: no text makes them panic, a refusal says
//! what was expected, and a value written in the documented form reads back exactly.

use proptest::prelude::*;

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Any text, and text shaped like a value: digits (sometimes too many), a dot, a unit.
fn valueish() -> impl Strategy<Value = String> {
    prop_oneof![
        "(?s).{0,16}",
        "[ \t]?[0-9]{0,30}(\\.[0-9]{0,4})?[ \t]?[a-zA-Z/]{0,6}[ \t]?",
        "[0-9]{1,25}[ /]?[smhdwyKMGiBb]{1,3}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_never_panics_and_a_refusal_names_the_text(s in valueish()) {
        let shown = format!("{s:?}");
        if let Err(e) = Rate::parse(&s) {
            prop_assert!(e.starts_with("expected") && e.contains(&shown), "{}", e);
        }
        if let Err(e) = duration(&s) {
            prop_assert!(e.starts_with("expected") && e.contains(&shown), "{}", e);
        }
        if let Err(e) = byte_size(&s) {
            prop_assert!(e.starts_with("expected") && e.contains(&shown), "{}", e);
        }
    }

    #[test]
    fn a_rate_reads_back_as_written(
        n in 1..=u32::MAX,
        (unit, secs) in prop_oneof![Just(("s", 1)), Just(("m", 60)), Just(("h", 3600))],
        (b0, b1, b2, b3) in ("[ \t]?", "[ \t]?", "[ \t]?", "[ \t]?"),
    ) {
        let r = Rate::parse(&format!("{b0}{n}{b1}/{b2}{unit}{b3}"))
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(r.count.get(), n);
        prop_assert_eq!(r.per, Duration::from_secs(secs));
        let zero = format!("0/{unit}");
        prop_assert!(Rate::parse(&zero).is_err());
    }

    #[test]
    fn a_duration_reads_back_from_its_humantime_form(
        secs in 0u64..100 * 365 * 86400,
        nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
    ) {
        let d = Duration::new(secs, nanos);
        let text = humantime::format_duration(d).to_string();
        prop_assert_eq!(duration(&text), Ok(d), "{}", text);
    }

    #[test]
    fn a_duration_in_one_unit_reads_back(
        n in 0u32..1_000_000,
        (unit, ms) in prop_oneof![
            Just(("ms", 1u64)),
            Just(("s", 1_000)),
            Just(("m", 60_000)),
            Just(("h", 3_600_000)),
            Just(("d", 86_400_000)),
        ],
    ) {
        prop_assert_eq!(duration(&format!("{n}{unit}")), Ok(Duration::from_millis(ms) * n));
    }

    #[test]
    fn a_size_reads_back_as_written(
        n in 1u64..=1 << 20,
        (unit, factor) in prop_oneof![
            Just(("B", 1u64)),
            Just(("KiB", 1 << 10)),
            Just(("MiB", 1 << 20)),
            Just(("GiB", 1 << 30)),
            Just(("KB", 1_000)),
            Just(("MB", 1_000_000)),
            Just(("", 1)),
        ],
        space in "[ ]?",
    ) {
        let text = format!("{n}{space}{unit}");
        prop_assert_eq!(byte_size(&text), Ok((n * factor) as usize), "{}", text);
        let zero = format!("0{unit}");
        prop_assert!(byte_size(&zero).is_err());
    }
}
