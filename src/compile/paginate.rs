//! `paginate:` on a call: which style walks the pages, and the diagnostics for a block that is
//! incomplete or contradicts itself.

use std::collections::HashSet;
use std::path::Path;

use super::{Loader, Paginate, Paging};
use crate::config::model::{PageStyle, PaginateConfig};
use crate::config::yaml::SpannedDoc;
use crate::mapping::{Templates, ValueTemplate};

/// Pages fetched when `max_pages` is not given.
pub const DEFAULT_MAX_PAGES: u32 = 20;
/// The highest `max_pages` accepted: a bound, not a way around one.
const MAX_MAX_PAGES: u64 = 10_000;

impl Loader<'_> {
    /// Compiles `cfg` found at `path` (`….call.paginate`); `None` after reporting its problems.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn paginate(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        cfg: PaginateConfig,
        known: &HashSet<String>,
        templates: &mut Templates,
    ) -> Option<Paginate> {
        let before = self.diagnostics.len();
        let problem = |loader: &mut Self, key: &str, msg: String, hint: &str| {
            let at = if key.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{key}")
            };
            let d = doc.diagnostic(file, &at, msg);
            loader
                .diagnostics
                .push(if hint.is_empty() { d } else { d.hint(hint) });
        };
        if !(cfg.items.is_empty() || cfg.items.starts_with('/')) {
            problem(
                self,
                "items",
                format!("`{}` is not a JSON pointer", cfg.items),
                "e.g. /items for a page like {\"items\": [...]}, or \"\" when the page is the array",
            );
        }
        if let Some(next) = &cfg.next
            && !next.starts_with('/')
        {
            problem(
                self,
                "next",
                format!("`{next}` is not a JSON pointer"),
                "e.g. /next or /meta/next_cursor",
            );
        }
        let style = cfg.style;
        let name = match style {
            PageStyle::Page => "page",
            PageStyle::Offset => "offset",
            PageStyle::NextLink => "next_link",
            PageStyle::Cursor => "cursor",
        };
        let sends_param = !matches!(style, PageStyle::NextLink);
        match (&cfg.param, sends_param) {
            (None, true) => problem(
                self,
                "",
                format!(
                    "`{name}` pagination needs `param`: the query parameter carrying the {name}"
                ),
                "e.g. param: page",
            ),
            (Some(_), false) => problem(
                self,
                "param",
                "`next_link` pagination follows the link as given and sends no parameter".into(),
                "remove `param`, or use style: cursor",
            ),
            _ => {}
        }
        let numbered = matches!(style, PageStyle::Page | PageStyle::Offset);
        if cfg.start.is_some() && !numbered {
            problem(
                self,
                "start",
                format!("`start` is for page and offset pagination, not `{name}`"),
                "",
            );
        }
        if cfg.next.is_some() && numbered {
            problem(
                self,
                "next",
                format!(
                    "`{name}` pagination computes the next page; `next` is for next_link and cursor"
                ),
                "",
            );
        }
        if style == PageStyle::Cursor && cfg.next.is_none() {
            problem(
                self,
                "",
                "`cursor` pagination needs `next`: the JSON pointer to the cursor in each page"
                    .into(),
                "e.g. next: /next_cursor",
            );
        }
        if style == PageStyle::Offset && cfg.size.is_none() {
            problem(
                self,
                "",
                "`offset` pagination needs `size`: how far the offset moves per page".into(),
                "e.g. size: 50",
            );
        }
        if cfg.size.is_some_and(|s| s.0 == 0) {
            problem(self, "size", "`size` must be at least 1".into(), "");
        }
        if cfg.size_param.is_some() && cfg.size.is_none() {
            problem(
                self,
                "size_param",
                "`size_param` sends `size`, which is not given".into(),
                "e.g. size: 50",
            );
        }
        let max_pages = match cfg.max_pages {
            None => DEFAULT_MAX_PAGES,
            Some(n) if (1..=MAX_MAX_PAGES).contains(&n.0) => n.0 as u32,
            Some(n) => {
                problem(
                    self,
                    "max_pages",
                    format!("`max_pages` is {}; it must be 1 to {MAX_MAX_PAGES}", n.0),
                    "",
                );
                0
            }
        };
        let stop = cfg.stop.as_ref().and_then(|s| {
            let mut with_page = known.clone();
            with_page.extend(["response".to_string(), "page".to_string()]);
            self.value(
                doc,
                file,
                scope,
                &format!("{path}.stop"),
                &serde_json::Value::String(s.clone()),
                &with_page,
                templates,
            )
        });
        if self.diagnostics.len() > before {
            return None;
        }
        let param = cfg.param.unwrap_or_default();
        let paging = match style {
            PageStyle::Page => Paging::Page {
                param,
                start: cfg.start.map_or(1, |s| s.0),
            },
            PageStyle::Offset => Paging::Offset {
                param,
                start: cfg.start.map_or(0, |s| s.0),
                size: cfg.size.map_or(1, |s| s.0),
            },
            PageStyle::NextLink => Paging::NextLink { pointer: cfg.next },
            PageStyle::Cursor => Paging::Cursor {
                param,
                pointer: cfg.next.unwrap_or_default(),
            },
        };
        Some(Paginate {
            paging,
            items: cfg.items,
            size: cfg.size.map(|s| s.0),
            stop,
            max_pages,
        })
    }
}

/// The query parameter sending the page size, when the block asks for it.
pub(super) fn size_query(cfg: &PaginateConfig) -> Option<(String, ValueTemplate)> {
    let (param, size) = (cfg.size_param.as_ref()?, cfg.size?);
    Some((
        param.clone(),
        ValueTemplate::Literal(serde_json::Value::String(size.0.to_string())),
    ))
}
