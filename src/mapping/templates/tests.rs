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

/// The same template and context through minijinja's own JSON escaping, for comparison.
fn render_default(src: &str, ctx: Value) -> String {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Json);
    env.add_template_owned("t.j2".to_string(), src.to_string())
        .unwrap();
    env.get_template("t.j2")
        .unwrap()
        .render(crate::mapping::jvalue(&ctx))
        .unwrap()
}

#[test]
fn values_are_written_as_minijinjas_json_escaping_writes_them() {
    let awkward: Vec<String> = [
        "",
        "plain",
        "Soil \"NPK\" <kit> & 'co'",
        "back\\slash / slash",
        "tab\tnew\nline\rcr\u{8}bs\u{c}ff",
        "\u{0}\u{1}\u{1f}\u{7f} control",
        "हिन्दी मिट्टी परीक्षण ✓ 🌾",
        "\"",
        "\\",
        "ends with a quote\"",
        "\u{1f}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ctx = json!({"s": awkward, "flags": [true, false], "n": [0, -3, 12345678901u64, 2.5, 1.0],
        "nothing": null, "map": {"b": [1, "x"], "a": {"c": "\"q\""}}});
    let src = "{% for x in s %}{{ x }}|{% endfor %}{{ flags[0] }}{{ flags[1] }}{% for x in n %}{{ x }},{% endfor %}\
               {{ nothing }}{{ map }}{{ s }}{{ 'lit\"eral' }}{{ 'safe\"' | safe }}";
    assert_eq!(render(src, ctx.clone()).unwrap(), render_default(src, ctx));
}

#[test]
fn a_price_behaves_as_the_map_it_stands_for() {
    let uses = "{{ p }} {{ p.currency }} {{ p['value'] }} {{ p | length }} {{ p | tojson }} \
                {{ p | list }} {{ p == {'currency': 'USD', 'value': '499.00'} }} {{ p is mapping }} \
                {% for k, v in p | items %}{{ k }}={{ v }};{% endfor %}{{ p | dictsort }} {{ [p] }}";
    let as_price = format!("{{% set p = 49900 | price('USD') %}}{uses}");
    let as_map = format!("{{% set p = {{'currency': 'USD', 'value': '499.00'}} %}}{uses}");
    let out = render(&as_price, json!({})).unwrap();
    assert_eq!(out, render(&as_map, json!({})).unwrap());
    assert!(
        out.starts_with(r#"{"currency":"USD","value":"499.00"} "USD""#),
        "{out}"
    );
    let mut t = Templates::new(10_000);
    t.add("text:price", &as_price).unwrap();
    t.add("text:map", &as_map).unwrap();
    let ctx = crate::mapping::jvalue(json!({}));
    assert_eq!(
        t.render("text:price", &ctx).unwrap(),
        t.render("text:map", &ctx).unwrap()
    );
}

#[test]
fn the_shipped_catalog_is_written_byte_for_byte_as_before() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/soil");
    let sources: Vec<(String, String)> = ["on_search.j2", "_common.j2"]
        .iter()
        .map(|f| {
            let src = std::fs::read_to_string(dir.join(f)).unwrap();
            (format!("soil/{f}"), src)
        })
        .collect();
    // minijinja's own formatter, and `price` as the map of two entries it used to return.
    let mut before = Environment::new();
    before.set_auto_escape_callback(|_| AutoEscape::Json);
    before.add_filter("from_minor", from_minor);
    before.add_filter("iso_duration", iso_duration);
    before.add_filter("price", |v: JValue, c: Option<String>, s: Option<u32>| {
        let mut map = std::collections::BTreeMap::new();
        map.insert("currency", JValue::from(c.unwrap_or_else(|| "INR".into())));
        map.insert("value", JValue::from(from_minor(v, s)?));
        Ok::<_, Error>(JValue::from(map))
    });
    let mut now = Templates::new(1_000_000);
    for (name, src) in &sources {
        before
            .add_template_owned(name.clone(), src.clone())
            .unwrap();
        now.add(name, src).unwrap();
    }
    let packages: Vec<Value> = (0..4)
        .map(|i| {
            json!({"sku": format!("soil-{i}"), "title": format!("Soil \"test\" {i}\t<b>"),
                "summary": "N\\P\\K \u{1} हिन्दी", "parameters": ["N", "pH \"7\""],
                "price_paise": 49900 + i, "turnaround_days": 3, "sample_instructions": "500 g\n8 spots",
                "modes": ["HOME_PICKUP", "LAB_DROP"], "cancellation_policy": {"fee_paise": 5000},
                "match": if i % 2 == 0 { "exact" } else { "related" }})
        })
        .collect();
    let ctx = crate::mapping::jvalue(json!({
        "lab": {"lab_code": "GFSL", "lab_name": "GreenField \"Soil\" Labs", "address": "Plot 14",
            "city": "New Delhi", "city_std_code": "std:011", "pincode": "110012",
            "gps": "28.6,77.1", "modes": ["HOME_PICKUP", "LAB_DROP"], "home_pickup_fee_paise": 5000},
        "found": {"packages": packages}}));
    let expected = before
        .get_template("soil/on_search.j2")
        .unwrap()
        .render(&ctx)
        .unwrap();
    assert_eq!(now.render("soil/on_search.j2", &ctx).unwrap(), expected);
}
