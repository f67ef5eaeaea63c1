use super::*;

#[test]
fn labs_have_distinct_catalogs_sharing_only_npk() {
    let gfsl = lab("GFSL").expect("GFSL is seeded");
    let kth = lab("KTH").expect("KTH is seeded");
    let shared: Vec<_> = gfsl
        .packages
        .iter()
        .filter(|p| kth.package(p.sku).is_some())
        .map(|p| p.sku)
        .collect();
    assert_eq!(shared, ["soil-npk-package"]);
    let npk = |l: &Lab| l.package("soil-npk-package").map(|p| p.price_paise);
    assert_ne!(npk(gfsl), npk(kth));
}

#[test]
fn package_modes_are_offered_by_their_lab() {
    for lab in labs() {
        assert!((4..=6).contains(&lab.packages.len()));
        for package in lab.packages {
            assert!(
                package.modes.iter().all(|m| lab.modes.contains(m)),
                "{} {}",
                lab.code,
                package.sku
            );
            assert!(!package.recommendations.is_empty());
        }
    }
}

#[test]
fn only_the_consultation_is_virtual() {
    let virtual_skus: Vec<_> = labs()
        .iter()
        .flat_map(|lab| lab.packages)
        .filter(|p| p.offers(Mode::Virtual))
        .map(|p| p.sku)
        .collect();
    assert_eq!(virtual_skus, ["soil-health-consult"]);
}

#[test]
fn service_area_is_a_pincode_prefix() {
    let gfsl = lab("GFSL").expect("GFSL is seeded");
    assert!(gfsl.serves("110012"));
    assert!(gfsl.serves("110099"));
    assert!(!gfsl.serves("110101"));
    assert!(!gfsl.serves("411005"));
}

#[test]
fn text_search_covers_title_summary_and_parameters() {
    let gfsl = lab("GFSL").expect("GFSL is seeded");
    let panel = gfsl.package("soil-micronutrient-panel").expect("seeded");
    assert!(panel.mentions("ZINC"));
    assert!(panel.mentions("hidden hunger"));
    assert!(panel.mentions("micronutrient"));
    assert!(!panel.mentions("gypsum"));
}

fn search(code: &str, query: PackageQuery) -> Vec<(&'static str, Relevance)> {
    lab(code)
        .expect("seeded")
        .search(&query)
        .expect("valid query")
        .into_iter()
        .map(|hit| (hit.package.sku, hit.relevance))
        .collect()
}

#[test]
fn crop_search_marks_exact_and_related() {
    let hits = search(
        "GFSL",
        PackageQuery {
            crop: Some("WHEAT".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        hits,
        [
            ("soil-npk-package", Relevance::Related),
            ("soil-micronutrient-panel", Relevance::Exact),
            ("soil-full-health-card", Relevance::Related),
            ("soil-salinity-sodicity", Relevance::Exact),
        ]
    );
}

#[test]
fn search_without_filters_lists_everything_as_exact() {
    let hits = search("KTH", PackageQuery::default());
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|(_, r)| *r == Relevance::Exact));
}

#[test]
fn search_outside_service_area_is_empty_not_an_error() {
    let hits = search(
        "GFSL",
        PackageQuery {
            pincode: Some("560001".into()),
            ..Default::default()
        },
    );
    assert!(hits.is_empty());
}

#[test]
fn malformed_pincode_or_mode_is_an_error() {
    let gfsl = lab("GFSL").expect("seeded");
    for query in [
        PackageQuery {
            pincode: Some("11001".into()),
            ..Default::default()
        },
        PackageQuery {
            mode: Some("DRONE".into()),
            ..Default::default()
        },
    ] {
        assert!(matches!(gfsl.search(&query), Err(ErpError::BadRequest(_))));
    }
}

#[test]
fn empty_filters_count_as_absent() {
    let hits = search(
        "GFSL",
        PackageQuery {
            crop: Some(String::new()),
            pincode: Some(" ".into()),
            mode: Some(String::new()),
            q: Some(String::new()),
        },
    );
    assert_eq!(hits.len(), 5);
}

#[test]
fn mode_and_text_filters_combine() {
    let hits = search(
        "KTH",
        PackageQuery {
            mode: Some("VIRTUAL".into()),
            ..Default::default()
        },
    );
    assert_eq!(hits, [("soil-health-consult", Relevance::Exact)]);
    let hits = search(
        "GFSL",
        PackageQuery {
            mode: Some("LAB_DROP".into()),
            q: Some("zinc".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        hits,
        [
            ("soil-micronutrient-panel", Relevance::Exact),
            ("soil-full-health-card", Relevance::Exact),
        ]
    );
    let hits = search(
        "GFSL",
        PackageQuery {
            mode: Some("HOME_PICKUP".into()),
            q: Some("quick".into()),
            ..Default::default()
        },
    );
    assert!(hits.is_empty());
}

#[test]
fn pincode_checks_format_then_area() {
    let gfsl = lab("GFSL").expect("seeded");
    assert_eq!(gfsl.check_pincode("110034"), Ok(()));
    assert_eq!(
        gfsl.check_pincode("560001"),
        Err(ErpError::OutsideServiceArea("560001".into()))
    );
    assert!(matches!(
        gfsl.check_pincode("abc"),
        Err(ErpError::BadRequest(_))
    ));
}

#[test]
fn crops_match_case_insensitively() {
    let gfsl = lab("GFSL").expect("GFSL is seeded");
    let panel = gfsl.package("soil-micronutrient-panel").expect("seeded");
    assert!(panel.lists_crop("wheat"));
    assert!(!panel.lists_crop("grapes"));
}
