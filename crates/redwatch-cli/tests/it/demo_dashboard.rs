//! The demo's dashboard page in a real browser: `redwatch demo` (without Prometheus) with its
//! load running, `/dashboard` loaded in headless Chromium (Debian's `chromium`), and the DOM
//! the page's script built checked: no script errors, charts with points, the demo's routes in
//! the table, a working route drill-down; and, with Prometheus (Debian's `prometheus`), its
//! pending and firing alerts listed.
//!
//! Without chromium (or prometheus, for the alerts): a notice and a pass, except in CI (`CI`
//! set), where it fails.
//! `cargo test -p redwatch-cli --test demo_dashboard -- --ignored` also renews
//! `docs/dashboard.png` from a minute of the demo's traffic.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::chromium;
use crate::support::demo_run::{Demo, MIX_ROUTES};
use crate::support::http::get_async;
use crate::support::tools::require_tool;
use crate::support::{self, Group};

/// Every chart of the page (the SVGs' ids).
const CHARTS: [&str; 13] = [
    "c-rps", "c-eps", "c-status", "c-avg", "c-under", "c-p50", "c-p90", "c-p99", "c-heat",
    "c-burn", "c-active", "c-cpu", "c-mem",
];

/// The DOM of `url` once the page has fetched and drawn its data.
async fn dump_dom(binary: &Path, url: String) -> String {
    let binary = binary.to_owned();
    tokio::task::spawn_blocking(move || chromium::dump_dom(&binary, &url))
        .await
        .expect("chromium thread")
}

/// The value of `attribute` on the element whose id is `id`.
fn attribute<'a>(dom: &'a str, id: &str, attribute: &str) -> Option<&'a str> {
    let at = dom.find(&format!(" id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let tag = &dom[start..end];
    let marker = format!(" {attribute}=\"");
    let value = &tag[tag.find(&marker)? + marker.len()..];
    Some(&value[..value.find('"')?])
}

/// The points drawn in the chart `id`.
fn points(dom: &str, id: &str) -> u64 {
    attribute(dom, id, "data-points")
        .and_then(|points| points.parse().ok())
        .unwrap_or(0)
}

/// The markup inside the element `id`, up to its first closing tag of `close`.
fn inner<'a>(dom: &'a str, id: &str, close: &str) -> &'a str {
    let marker = format!(" id=\"{id}\"");
    let Some(at) = dom.find(&marker) else {
        return "";
    };
    let Some(open_end) = dom[at..].find('>').map(|end| at + end + 1) else {
        return "";
    };
    let end = dom[open_end..]
        .find(close)
        .map_or(dom.len(), |end| open_end + end);
    &dom[open_end..end]
}

/// The `data-route` of every row of the route table.
fn table_routes(dom: &str) -> Vec<String> {
    inner(dom, "routes", "</tbody>")
        .split("<tr data-route=\"")
        .skip(1)
        .filter_map(|row| row.split('"').next())
        .map(|route| route.replace("&amp;", "&"))
        .collect()
}

fn assert_no_script_errors(dom: &str) {
    assert_eq!(
        body_attribute(dom, "data-js-errors"),
        Some("0"),
        "script errors: {}",
        inner(dom, "js-errors", "</pre>")
    );
    assert_eq!(
        inner(dom, "js-errors", "</pre>"),
        "",
        "script errors recorded"
    );
    let renders: u64 = body_attribute(dom, "data-renders")
        .and_then(|renders| renders.parse().ok())
        .unwrap_or(0);
    assert!(renders >= 1, "the data was never rendered");
}

/// An attribute of `<body>`.
fn body_attribute<'a>(dom: &'a str, attribute: &str) -> Option<&'a str> {
    let start = dom.find("<body")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let marker = format!(" {attribute}=\"");
    let value = &tag[tag.find(&marker)? + marker.len()..];
    Some(&value[..value.find('"')?])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_works_in_headless_chromium() {
    let _group = support::shared(Group::Patient);
    let Some(browser) = require_tool("chromium", "chromium") else {
        return;
    };
    let demo = Demo::start(
        &[
            "--prometheus-listen",
            "127.0.0.1:0",
            "--rate",
            "40",
            "--prometheus",
            "none",
        ],
        &[],
    );
    // Every route of the mix has a rate (two samples of it, a second apart): at most 20 s.
    demo.data_with_every_route(Duration::from_secs(20)).await;
    let base = format!("http://{}/dashboard", demo.api);

    let overview = dump_dom(&browser, format!("{base}#range=60")).await;
    assert_no_script_errors(&overview);
    for chart in CHARTS {
        assert!(
            points(&overview, chart) > 0,
            "{chart} has no data points:\n{}",
            inner(&overview, chart, "</svg>")
        );
    }
    let routes = table_routes(&overview);
    for route in MIX_ROUTES {
        assert!(
            routes.iter().any(|r| r == route),
            "{route} missing from the table {routes:?}"
        );
    }
    assert!(
        !routes.iter().any(|route| route.starts_with("/dashboard")),
        "the page's own requests are not API traffic: {routes:?}"
    );
    // Without Prometheus, one line says why no alerts are shown.
    let alerts = inner(&overview, "alerts-note", "</span>");
    assert!(alerts.contains("no Prometheus configured"), "{alerts}");

    // The drill-down, as a user types it: only /ep_one's lines, the table still lists all.
    let drill = dump_dom(&browser, format!("{base}#route=/ep_one&range=60")).await;
    assert_no_script_errors(&drill);
    assert_eq!(
        attribute(&drill, "scope", "data-route"),
        Some("/ep_one"),
        "no drill-down scope"
    );
    let legend = inner(&drill, "l-rps", "</div>");
    assert!(
        legend.contains("/ep_one") && !MIX_ROUTES[1..].iter().any(|r| legend.contains(r)),
        "the drill-down's legend: {legend}"
    );
    assert!(points(&drill, "c-p99") > 0, "no p99 of /ep_one");
    // The table still lists every route, and nothing the browser asked for on its own (such
    // as /favicon.ico) became API traffic.
    assert_eq!(table_routes(&drill), routes);
}

/// The names of Prometheus's pending and firing alerts, with their state.
async fn active_alerts(prometheus: std::net::SocketAddr) -> Vec<(String, String)> {
    let response = get_async(prometheus, "/api/v1/alerts", &[]).await;
    let answer: serde_json::Value = serde_json::from_str(&response.body).expect("alerts JSON");
    let mut alerts: Vec<(String, String)> = answer["data"]["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|alert| {
            let state = alert["state"].as_str()?;
            let name = alert["labels"]["alertname"].as_str()?;
            matches!(state, "pending" | "firing").then(|| (state.to_owned(), name.to_owned()))
        })
        .collect();
    alerts.sort();
    alerts.dedup();
    alerts
}

/// With Prometheus, the page lists its pending and firing alerts: the demo's mix fails 1 request
/// in 11, far beyond the 99.9 % objective, so the burn-rate alerts go off within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_shows_prometheus_alerts() {
    let _group = support::shared(Group::Patient);
    let (Some(browser), Some(prometheus_binary)) = (
        require_tool("chromium", "chromium"),
        require_tool("prometheus", "prometheus"),
    ) else {
        return;
    };
    let demo = Demo::start(
        &[
            "--prometheus-listen",
            "127.0.0.1:0",
            "--rate",
            "40",
            "--prometheus",
            prometheus_binary.to_str().expect("UTF-8 path"),
            "--scrape-interval",
            "1s",
        ],
        &[],
    );
    let prometheus = demo
        .prometheus_addr()
        .unwrap_or_else(|| panic!("Prometheus did not start: {}", demo.stdout()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let alerts = loop {
        let alerts = active_alerts(prometheus).await;
        if !alerts.is_empty() {
            break alerts;
        }
        assert!(Instant::now() < deadline, "no alert within 60 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let dom = dump_dom(&browser, format!("http://{}/dashboard", demo.api)).await;
    assert_no_script_errors(&dom);
    let note = inner(&dom, "alerts-note", "</span>");
    assert!(
        note.contains(&format!("http://{prometheus}")),
        "the note names the Prometheus: {note}"
    );
    // Alerts only move on (pending to firing, more of them): each one seen is on the page.
    let list = inner(&dom, "alert-list", "</ul>");
    for (state, name) in &alerts {
        assert!(
            list.contains(&format!("<strong>{name}</strong>")),
            "{state} {name} not listed: {list}"
        );
    }
}

/// Renews `docs/dashboard.png`: the demo page after a minute of traffic, every panel filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes a minute; renews docs/dashboard.png"]
async fn screenshot_of_the_demo_page() {
    let _group = support::shared(Group::Patient);
    let Some(browser) = require_tool("chromium", "chromium") else {
        return;
    };
    let demo = Demo::start(
        &[
            "--prometheus-listen",
            "127.0.0.1:0",
            "--rate",
            "20",
            "--prometheus",
            "none",
        ],
        &[],
    );
    demo.data_with_every_route(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "docs",
        "dashboard.png",
    ]
    .iter()
    .collect();
    let url = format!("http://{}/dashboard#range=60", demo.api);
    let dom = dump_dom(&browser, url.clone()).await;
    assert_no_script_errors(&dom);
    for chart in CHARTS {
        assert!(points(&dom, chart) > 0, "{chart} has no data points");
    }
    let what = format!("--screenshot={}", path.display());
    tokio::task::spawn_blocking(move || chromium::headless(&browser, &url, &what, 4000))
        .await
        .expect("chromium thread");
    assert!(path.is_file(), "no screenshot at {}", path.display());
}
