//! Rendering, filters and the check helpers of the template environment.

use super::*;
use serde_json::json;

fn render(src: &str, ctx: Value) -> Result<String, TemplateError> {
    let mut t = Templates::new(10_000);
    t.add("t.j2", src)?;
    t.render("t.j2", &crate::mapping::jvalue(&ctx))
}

#[test]
fn json_escaping_keeps_output_valid() {
    let out = render(
        r#"{"name": {{ name }}}"#,
        json!({"name": "Soil \"NPK\" <kit>"}),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "Soil \"NPK\" <kit>");
}

#[test]
fn strict_undefined_names_the_line() {
    let err = render("{\n\"a\": {{ missing.x }}}", json!({})).unwrap_err();
    assert_eq!(err.line, Some(2));
    assert_eq!(err.template, "t.j2");
}

#[test]
fn fuel_stops_runaway_loops() {
    let err = render("{% for i in range(100000) %}{{ i }}{% endfor %}", json!({})).unwrap_err();
    assert!(err.detail.contains("fuel"), "{err}");
}

#[test]
fn filters() {
    let out = render(
        "{{ 49900 | from_minor }} {{ 5 | from_minor }} {{ 2.5 | fixed(1) }} {{ 5 | iso_duration('days') }}",
        json!({}),
    )
    .unwrap();
    assert_eq!(out, r#""499.00" "0.05" "2.5" "P5D""#);
    let out = render("{{ 49900 | price }} {{ 5 | price('USD') }}", json!({})).unwrap();
    assert_eq!(
        out,
        r#"{"currency":"INR","value":"499.00"} {"currency":"USD","value":"0.05"}"#
    );
    let tags = json!([{"descriptor": {"code": "crop"}, "list": [{"descriptor": {"code": "name"}, "value": "wheat"}]}]);
    let out = render(
        "{{ tags | tag_value('crop', 'name') }}",
        json!({"tags": tags}),
    )
    .unwrap();
    assert_eq!(out, r#""wheat""#);
}

#[test]
fn epoch_counts_in_either_unit_and_moves_by_durations() {
    let out = render(
        r#"{{ t | epoch }} {{ t | epoch("milliseconds") }} {{ t | epoch("seconds", "P7D") }}"#,
        json!({"t": "2026-11-23T10:00:00Z"}),
    )
    .unwrap();
    assert_eq!(out, "1795428000 1795428000000 1796032800");
    let err = render(r#"{{ "yesterday" | epoch }}"#, json!({})).unwrap_err();
    assert!(err.detail.contains("RFC 3339"), "{err}");
}

#[test]
fn money_from_decimal_strings_and_minor_units() {
    let out = render(
        r#"{{ "1499.5" | decimal }} {{ 1499 | decimal }} {{ 0.1 | decimal }} {{ "2.5" | decimal(3) }} {{ "1499.50" | to_minor }}"#,
        json!({}),
    )
    .unwrap();
    assert_eq!(out, r#""1499.50" "1499.00" "0.10" "2.500" 149950"#);
    let out = render(
        r#"{{ "1499.5" | decimal_price }} {{ "3" | decimal_price("USD") }}"#,
        json!({}),
    )
    .unwrap();
    assert_eq!(
        out,
        r#"{"currency":"INR","value":"1499.50"} {"currency":"USD","value":"3.00"}"#
    );
    let err = render(r#"{{ p | decimal }}"#, json!({"p": "1,499"})).unwrap_err();
    assert!(
        err.detail
            .contains("decimal: `1,499` is not a decimal number"),
        "{err}"
    );
    let err = render(r#"{{ p | to_minor }}"#, json!({"p": "1.999"})).unwrap_err();
    assert!(
        err.detail.contains("`1.999` has more than 2 decimals"),
        "{err}"
    );
    let err = render(r#"{{ 5 | from_minor(40) }}"#, json!({})).unwrap_err();
    assert!(err.detail.contains("scale 40 is more than 38"), "{err}");
    let err = render(r#"{{ p | decimal }}"#, json!({"p": [1]})).unwrap_err();
    assert!(
        err.detail.contains("neither a decimal string nor a number"),
        "{err}"
    );
}

#[test]
fn local_times_and_durations() {
    let out = render(
        r#"{{ "2026-12-02T09:00" | local_to_rfc3339("Asia/Kolkata") }} {{ "2026-12-02T03:30:00Z" | rfc3339_to_local("Asia/Kolkata") }} {{ "2026-12-02T03:30:00Z" | rfc3339_to_local("Asia/Kolkata", "%H:%M") }} {{ "2026-12-02T09:00:00+05:30" | add_duration("PT2H") }} {{ "2026-12-02T03:30:00Z" | add_duration("90m") }}"#,
        json!({}),
    )
    .unwrap();
    assert_eq!(
        out,
        r#""2026-12-02T09:00:00+05:30" "2026-12-02T09:00" "09:00" "2026-12-02T11:00:00+05:30" "2026-12-02T05:00:00Z""#
    );
    let err = render(
        r#"{{ "2026-12-02T09:00" | local_to_rfc3339("Asia/Kolkatta") }}"#,
        json!({}),
    )
    .unwrap_err();
    assert!(
        err.detail.contains("`Asia/Kolkatta` is not a time zone"),
        "{err}"
    );
    let err = render(r#"{{ "soon" | add_duration("PT2H") }}"#, json!({})).unwrap_err();
    assert!(
        err.detail
            .contains("add_duration: `soon` is not an RFC 3339 time"),
        "{err}"
    );
}

#[test]
fn unknown_filters_and_tests_are_found_before_running() {
    let mut t = Templates::new(1000);
    let src = "{% macro m(x) %}{{ x | nope }}{% endmacro %}\n{{ a | upper | decimal }}\n  {{ b is odd }} {{ c is wierd }} {{ d | nope }}";
    t.add("t.j2", src).unwrap();
    let found: Vec<_> = t
        .unknown_callables("t.j2")
        .into_iter()
        .map(|u| (u.kind.to_string(), u.name, u.line, u.column))
        .collect();
    assert_eq!(
        found,
        vec![
            ("filter".into(), "nope".into(), Some(1), Some(24)),
            ("test".into(), "wierd".into(), Some(3), Some(26)),
        ]
    );
    t.add(
        "ok.j2",
        "{% filter upper %}x{% endfilter %}{{ 5 | from_minor }}",
    )
    .unwrap();
    assert!(t.unknown_callables("ok.j2").is_empty());
}

#[test]
fn segments_cannot_leave_their_place() {
    let mut t = Templates::new(1000);
    t.add("text:p", "/orders/{{ id | segment }}/cancel")
        .unwrap();
    let out = t
        .render("text:p", &crate::mapping::jvalue(json!({"id": "a/../b c"})))
        .unwrap();
    assert_eq!(out, "/orders/a%2F..%2Fb%20c/cancel");
}

#[test]
fn fail_carries_a_beckn_error() {
    let err = render(r#"{{ fail("30004", "no such package") }}"#, json!({})).unwrap_err();
    assert_eq!(err.beckn, Some(("30004".into(), "no such package".into())));
}

#[test]
fn text_templates_are_raw() {
    let mut t = Templates::new(1000);
    t.add("text:path", "/orders/{{ id }}").unwrap();
    let out = t
        .render("text:path", &crate::mapping::jvalue(json!({"id": "A-1"})))
        .unwrap();
    assert_eq!(out, "/orders/A-1");
}

#[test]
fn reads_variable_follows_imports_and_includes_by_name() {
    let mut t = Templates::new(10_000);
    t.add("direct.j2", "{{ transaction.booked }}").unwrap();
    t.add(
        "macros.j2",
        "{% macro booked() %}{{ transaction.booked }}{% endmacro %}",
    )
    .unwrap();
    t.add("plain.j2", "{% macro name(o) %}{{ o.name }}{% endmacro %}")
        .unwrap();
    t.add(
        "imports.j2",
        "{% from \"macros.j2\" import booked %}{{ booked() }}",
    )
    .unwrap();
    t.add(
        "imports_plain.j2",
        "{% import \"plain.j2\" as p %}{{ p.name(message) }}",
    )
    .unwrap();
    t.add(
        "includes.j2",
        "{% include [\"missing.j2\", \"direct.j2\"] %}",
    )
    .unwrap();
    t.add("dynamic.j2", "{% include message.which %}").unwrap();
    t.add("debugs.j2", "{{ debug() }}").unwrap();
    t.add("cycle_a.j2", "{% include \"cycle_b.j2\" %}").unwrap();
    t.add("cycle_b.j2", "{% include \"cycle_a.j2\" %}").unwrap();
    let reads = |name| t.reads_variable(name, "transaction");
    assert!(reads("direct.j2"));
    assert!(reads("imports.j2"), "through a macro it imports");
    assert!(reads("includes.j2"), "through a template it includes");
    assert!(
        reads("dynamic.j2"),
        "an include named at run time may read anything"
    );
    assert!(reads("debugs.j2"), "debug() prints every variable");
    assert!(!reads("imports_plain.j2"));
    assert!(!reads("plain.j2"));
    assert!(!reads("cycle_a.j2"), "a cycle of includes ends");
}

/// Both ways of rendering a JSON template: straight to a value, and as text parsed back.
fn both_ways(src: &str, ctx: &Value, fuel: u64) -> (Result<Value, String>, Result<Value, String>) {
    let mut t = Templates::new(fuel);
    t.add("m.j2", "{% macro m(x) %}{\"v\": {{ x }}}{% endmacro %}")
        .unwrap();
    t.add("t.j2", src).unwrap();
    let ctx = crate::mapping::jvalue(ctx);
    let show = |e: TemplateError| format!("{e} {:?}", e.beckn);
    (
        t.render_json("t.j2", &ctx).map_err(show),
        t.render_json_text("t.j2", &ctx).map_err(show),
    )
}

#[test]
fn direct_render_gives_what_the_text_parses_to() {
    let ctx = json!({
        "s": "Soil \"NPK\" \\ <kit> \n\t\u{1}\u{7}\u{1f} ünï 🌾",
        "marker": "\u{1}   ",
        "n": 12, "neg": -7, "big": u64::MAX, "f": 0.1, "g": 1e300, "t": true, "none": null,
        "list": [1, "a", [], {}, [[{"k": null}]]],
        "map": {"b": 1, "a": {"c": [true, false]}},
        "deep": (0..130).fold(json!(1), |acc, _| json!([acc])),
        "k": "key", "pkgs": [{"sku": "a", "p": 49900}, {"sku": "b", "p": 5}]
    });
    let cases = [
        r#"{"s": {{ s }}, "n": {{ n }}, "neg": {{ neg }}, "big": {{ big }}, "f": {{ f }}, "g": {{ g }}}"#,
        r#"{"t": {{ t }}, "none": {{ none }}, "list": {{ list }}, "map": {{ map }}, "m": {{ marker }}}"#,
        r#"[{% for p in pkgs %}{"id": {{ p.sku }}, "price": {{ p.p | price }}}{% if not loop.last %},{% endif %}{% endfor %}]"#,
        r#"{ {{ k }}: 1, "key": 2, {{ k }}: 3 }"#,
        r#"{ {{ n }}: 1 }"#,
        r#"[{{ n }}{{ n }}]"#,
        r#"["x {{ n }}", "x {{ s }}"]"#,
        r#""\{{ s }}""#,
        r#"[{{ m(s) }}, {{ m(list) }}]"#,
        r#"{% from "m.j2" import m %}[{{ m(map) }}, {{ m(n) }}]"#,
        r#"{% import "m.j2" as mm %}[{{ mm.m(s) }}, {{ mm.m(n) | length }}]"#,
        r#"{% set q = m(s) %}[{{ n }}, {{ q }}]"#,
        r#"{% set b %}{% with %}{% include "m.j2" %}{% endwith %}{% endset %}[{{ n }}, {{ b }}]"#,
        r#"{% set b %}{{ s }}{% endset %}[{{ n }}, {{ b }}, {{ b | length }}]"#,
        r#"[{{ marker | safe }}, {{ s }}]"#,
        r#"[{{ s | tojson }}, {{ map | tojson }}]"#,
        r#"{"deep": {{ deep }}}"#,
        r#"{"a": {{ s }},}"#,
        r#"{"a": {{ s }}} {{ n }}"#,
        r#"  "#,
        r#"{"a": {{ nothing.here }}}"#,
        r#"{"a": {{ fail("30004", "no such test") }}}"#,
        r#"{"a": 01, "b": -0, "c": 1.5e3, "d": "\u00e9\n"}"#,
    ];
    for src in cases {
        let (direct, text) = both_ways(src, &ctx, 100_000);
        assert_eq!(direct, text, "{src}");
    }
}

#[test]
fn direct_render_runs_out_of_fuel_where_the_text_does() {
    let ctx = json!({"names": (0..40).map(|i| format!("soil \"test\" {i}")).collect::<Vec<_>>(),
        "p": {"a": [1, 2, 3], "b": "x"}});
    let src = r#"[{% for n in names %}{"n": {{ n }}, "p": {{ p }}}{% if not loop.last %},{% endif %}{% endfor %}]"#;
    let mut outcomes = Vec::new();
    for fuel in (100..3_000).step_by(7) {
        let (direct, text) = both_ways(src, &ctx, fuel);
        assert_eq!(direct, text, "fuel {fuel}");
        outcomes.push(direct.is_ok());
    }
    assert!(outcomes.contains(&true) && outcomes.contains(&false));
}

/// The shipped catalog with `n` packages: rendered straight to a value, not through the text.
#[test]
fn shipped_catalog_renders_directly_to_what_its_text_parses_to() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let mut t = Templates::new(1_000_000);
    for name in ["soil/_common.j2", "soil/on_search.j2"] {
        let source = std::fs::read_to_string(dir.join(name)).unwrap();
        t.add(name, &source).unwrap();
    }
    let packages: Vec<Value> = (0..20)
        .map(|i| {
            json!({"sku": format!("soil-test-{i}"), "title": format!("Soil \"test\" {i}"),
                "summary": "Primary nutrients.", "parameters": ["Nitrogen (N)", "pH"],
                "price_paise": 49900 + i * 100, "turnaround_days": 3,
                "sample_instructions": "Collect 500 g\nof soil.", "modes": ["HOME_PICKUP", "LAB_DROP"],
                "cancellation_policy": {"fee_paise": 5000}, "match": if i % 2 == 0 { "exact" } else { "related" }})
        })
        .collect();
    let ctx = crate::mapping::jvalue(json!({
        "lab": {"lab_code": "GFSL", "lab_name": "GreenField", "city": "New Delhi",
            "city_std_code": "std:011", "pincode": "110012", "gps": "28.6,77.1", "address": "Plot 14",
            "modes": ["HOME_PICKUP", "LAB_DROP"], "home_pickup_fee_paise": 5000},
        "found": {"packages": packages}
    }));
    let direct = match crate::mapping::json_render::render_value(&t.env, "soil/on_search.j2", &ctx)
    {
        crate::mapping::json_render::Rendered::Value(v) => v,
        _ => panic!("the catalog fell back to the text path"),
    };
    assert!(t.renders_direct("soil/on_search.j2"));
    assert_eq!(
        direct,
        t.render_json_text("soil/on_search.j2", &ctx).unwrap()
    );
    assert_eq!(
        direct["catalog"]["providers"][0]["items"][3]["descriptor"]["name"],
        "Soil \"test\" 3"
    );
}
