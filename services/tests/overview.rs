//! The paged overview (`/monitor`, `/websites`) and `/monitor/summary`
//! against the real servers: every website once across pages under every
//! sort, the filters, the `Link` header, refused parameters, the summary's
//! counts, and the SQL uptime twin of the domain's rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::stack::{eventually, region_name, Stack};
use common::Db;
use events::{
    Actor, DownPolicy, Envelope, Event, FailureCause, IntervalSecs, SiteDown, SiteUp, TimeoutMs, WebsiteAdded,
    WebsiteName, WebsiteUrl,
};
use poem::http::{Method, StatusCode};
use projections::overview::{self, Filter, Sort};
use serde_json::{json, Value};
use services::projector::{self, Projection};
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A GET: status, body, and the `Link` header.
async fn get(stack: &Stack, path: &str) -> (StatusCode, Value, Option<String>) {
    let response = stack.client.get(path).send().await;
    let status = response.0.status();
    let link = response.0.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = response.0.into_body().into_vec().await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), link)
}

/// The address in `<...>; rel="next"`.
fn next_of(link: &str) -> String {
    let (target, rel) = link.split_once("; ").expect("a Link with parameters");
    assert_eq!(rel, "rel=\"next\"", "{link}");
    target.strip_prefix('<').and_then(|t| t.strip_suffix('>')).expect("<target>").to_owned()
}

/// Every page from `first` on, following `Link`: the pages' ids.
async fn walk(stack: &Stack, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(path) = next.take() {
        let (status, body, link) = get(stack, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let ids: Vec<String> =
            body.as_array().expect("array").iter().map(|w| w["id"].as_str().expect("id").to_owned()).collect();
        pages.push(ids);
        next = link.as_deref().map(next_of);
        assert!(pages.len() < 100, "paging does not end");
    }
    pages
}

/// Websites named so that sorts differ: names repeat, some are down, one
/// is checked from a second region, one has not been checked.
async fn fleet(stack: &Stack) -> Vec<(String, String)> {
    let (status, _) = stack.call(Method::POST, "/regions", Some(json!({ "name": "europe" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut websites = Vec::new();
    for n in 0..11 {
        let name = ["Shop", "blog", "API", "status"][n % 4].to_owned();
        let regions = if n == 4 { json!(["local", "europe"]) } else { json!(["local"]) };
        let body = json!({ "url": format!("https://site-{n}.example.com/"), "name": name, "regions": regions });
        websites.push((stack.add_website(body).await, name));
    }
    let at = Utc::now();
    for (n, (id, _)) in websites.iter().enumerate() {
        if n == 10 {
            continue;
        }
        stack.check(id.parse().expect("uuid"), "local", at, n % 3 != 0).await;
    }
    // 0, 3, 6 and 9 are down; 4 is pending (europe has not checked it),
    // and so is 10.
    eventually(Duration::from_secs(10), "the statuses of the checks", || async {
        let (_, summary, _) = get(stack, "/monitor/summary").await;
        (summary["websites"] == json!({ "up": 5, "down": 4, "pending": 2, "paused": 0 })).then_some(())
    })
    .await;
    websites
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_website_is_listed_exactly_once_across_pages_under_every_sort() {
    let stack = Stack::start(&[]).await;
    let websites = fleet(&stack).await;
    let all: HashSet<String> = websites.iter().map(|(id, _)| id.clone()).collect();

    for endpoint in ["/monitor", "/websites"] {
        for sort in ["", "&sort=status", "&sort=name", "&sort=last_change", "&sort=uptime_24h", "&sort=created"] {
            let pages = walk(&stack, &format!("{endpoint}?limit=3{sort}")).await;
            let listed: Vec<String> = pages.concat();
            assert_eq!(pages.len(), 4, "{endpoint}{sort}: 11 websites in pages of 3");
            assert_eq!(listed.len(), all.len(), "{endpoint}{sort}: {listed:?}");
            assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), all, "{endpoint}{sort}");
            // One page holding everything lists them in the same order.
            let (_, whole, link) = get(&stack, &format!("{endpoint}?limit=500{sort}")).await;
            let whole: Vec<&str> = whole.as_array().expect("array").iter().filter_map(|w| w["id"].as_str()).collect();
            assert_eq!(whole, listed, "{endpoint}{sort}");
            assert_eq!(link, None, "{endpoint}{sort}: no Link on the last page");
        }
    }

    // /monitor is down first by default, then pending, then up, by name.
    let (_, body, _) = get(&stack, "/monitor").await;
    let order: Vec<(String, String)> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|w| {
            (w["status"].as_str().unwrap_or_default().to_owned(), w["name"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let rank = |s: &str| ["down", "pending", "up"].iter().position(|r| *r == s).unwrap_or(9);
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| (rank(&a.0), &a.1).cmp(&(rank(&b.0), &b.1)));
    assert_eq!(order, sorted);
    assert_eq!(order[0].0, "down");
    // /websites keeps creation order by default.
    let (_, body, _) = get(&stack, "/websites").await;
    let ids: Vec<&str> = body.as_array().expect("array").iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, websites.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_carries_what_the_overview_shows() {
    let stack = Stack::start(&[]).await;
    let websites = fleet(&stack).await;
    let (_, body, _) = get(&stack, "/monitor?sort=created&limit=5").await;
    let first = &body[0];
    assert_eq!(first["id"], websites[0].0.as_str());
    assert_eq!(first["status"], "down");
    assert!(first["status_since"].is_string(), "{first}");
    assert_eq!(first["uptime_24h"], 100.0, "no incident yet: {first}");
    assert_eq!(first["response_ms"], 12, "{first}");
    assert_eq!(first["regions"][0]["status"], "down", "{first}");
    assert_eq!(first["regions"][0]["status_code"], 503, "{first}");
    let pending = &body[4];
    assert_eq!(pending["status"], "pending", "{pending}");
    let regions: Vec<(&str, &str)> = pending["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .map(|r| (r["region"].as_str().unwrap_or_default(), r["status"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(regions, vec![("europe", "pending"), ("local", "up")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_list_and_combine() {
    let stack = Stack::start(&[]).await;
    let websites = fleet(&stack).await;
    let ids = |body: &Value| -> HashSet<String> {
        body.as_array().expect("array").iter().filter_map(|w| w["id"].as_str().map(str::to_owned)).collect()
    };
    let expect = |ns: &[usize]| -> HashSet<String> { ns.iter().map(|n| websites[*n].0.clone()).collect() };

    for (query, expected) in [
        ("status=down", expect(&[0, 3, 6, 9])),
        ("status=pending", expect(&[4, 10])),
        ("status=up", expect(&[1, 2, 5, 7, 8])),
        ("status=paused", expect(&[])),
        ("region=europe", expect(&[4])),
        // Name or URL, case-insensitive, anywhere.
        ("q=sHoP", expect(&[0, 4, 8])),
        ("q=SITE-1", expect(&[1, 10])),
        ("q=.example.com/", expect(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])),
        // `%` and `_` are text, not wildcards.
        ("q=%25", expect(&[])),
        ("q=site_1", expect(&[])),
        ("q=shop&status=down", expect(&[0])),
        ("q=&status=pending", expect(&[4, 10])),
    ] {
        for endpoint in ["/monitor", "/websites"] {
            let (status, body, link) = get(&stack, &format!("{endpoint}?{query}")).await;
            assert_eq!(status, StatusCode::OK, "{endpoint}?{query}: {body}");
            assert_eq!(ids(&body), expected, "{endpoint}?{query}");
            assert_eq!(link, None);
        }
    }
    // A filtered walk keeps its filter on every page.
    let pages = walk(&stack, "/monitor?limit=1&status=down&sort=name").await;
    assert_eq!(pages.concat().into_iter().collect::<HashSet<_>>(), expect(&[0, 3, 6, 9]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_header_names_the_next_page_with_every_parameter() {
    let stack = Stack::start(&[]).await;
    fleet(&stack).await;
    let (status, _, link) = get(&stack, "/monitor?limit=2&q=example&sort=name&region=local&status=up").await;
    assert_eq!(status, StatusCode::OK);
    let link = link.expect("a Link header");
    let next = next_of(&link);
    let url = url::Url::parse(&format!("http://host{next}")).expect("a relative URL");
    assert_eq!(url.path(), "/monitor");
    let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["limit", "status", "sort", "q", "region", "cursor"], "{link}");
    assert!(pairs.contains(&("q".into(), "example".into())));

    // No limit: up to 500, so a small system is one page without Link.
    let (_, body, link) = get(&stack, "/websites").await;
    assert_eq!(body.as_array().map(Vec::len), Some(11));
    assert_eq!(link, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cursor_is_400_and_values_out_of_their_rules_are_422_naming_them() {
    let stack = Stack::start(&[]).await;
    fleet(&stack).await;
    let (_, _, link) = get(&stack, "/monitor?limit=2&sort=name").await;
    let name_cursor = next_of(&link.expect("Link")).split("cursor=").nth(1).expect("cursor").to_owned();

    for (path, status, field) in [
        ("/monitor?cursor=not-a-cursor", StatusCode::BAD_REQUEST, "cursor"),
        ("/websites?cursor=eyJzb3J0IjoibmFtZSJ9", StatusCode::BAD_REQUEST, "cursor"),
        (&format!("/monitor?sort=status&cursor={name_cursor}"), StatusCode::BAD_REQUEST, "cursor"),
        ("/monitor?limit=0", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        ("/monitor?limit=501", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        ("/websites?limit=0", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        ("/websites?limit=501", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        ("/monitor?limit=ten", StatusCode::BAD_REQUEST, "limit"),
        ("/monitor?status=sideways", StatusCode::UNPROCESSABLE_ENTITY, "status"),
        ("/monitor?sort=size", StatusCode::UNPROCESSABLE_ENTITY, "sort"),
        ("/monitor?region=mars", StatusCode::UNPROCESSABLE_ENTITY, "region"),
        ("/monitor?q=%0A", StatusCode::UNPROCESSABLE_ENTITY, "q"),
    ] {
        let (got, body, _) = get(&stack, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    // The cursor with its own sort continues.
    let (status, body, _) = get(&stack, &format!("/monitor?limit=2&sort=name&cursor={name_cursor}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_counts_websites_by_status_and_region_and_lists_those_down() {
    let stack = Stack::start(&[]).await;
    let websites = fleet(&stack).await;
    let (status, summary, _) = get(&stack, "/monitor/summary").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(summary["websites"], json!({ "up": 5, "down": 4, "pending": 2, "paused": 0 }));
    assert_eq!(
        summary["regions"],
        json!([
            { "region": "europe", "checks": { "up": 0, "down": 0, "pending": 1, "paused": 0 } },
            { "region": "local", "checks": { "up": 6, "down": 4, "pending": 1, "paused": 0 } },
        ])
    );
    let down: HashSet<&str> =
        summary["down"].as_array().expect("down").iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(down, [0, 3, 6, 9].iter().map(|n| websites[*n].0.as_str()).collect());

    // A recovery moves the website out of the list.
    stack.check(websites[0].0.parse().expect("uuid"), "local", Utc::now(), true).await;
    eventually(Duration::from_secs(10), "the recovery in the summary", || async {
        let (_, summary, _) = get(&stack, "/monitor/summary").await;
        (summary["websites"]["down"] == 3 && summary["down"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_regions_or_policy_recomputes_the_status() {
    let stack = Stack::start(&[]).await;
    let websites = fleet(&stack).await;
    let pending = &websites[4].0;
    // Without the unchecked region the website is up.
    let (status, _) =
        stack.call(Method::PATCH, &format!("/websites/{pending}"), Some(json!({ "regions": ["local"] }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stack.monitor(pending).await["status"], "up");
    let (_, body, _) = get(&stack, "/monitor?status=pending").await;
    assert_eq!(body.as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_lowers_the_uptime_and_sorts_the_website_first_by_uptime() {
    let stack = Stack::start(&[]).await;
    fleet(&stack).await;
    // Added two days ago (uptime counts from when a website was added),
    // down for 36 minutes of the last 24 hours, from the detector's events.
    let website = Uuid::now_v7();
    let added = WebsiteAdded {
        website_id: website,
        url: WebsiteUrl::parse("https://old.example.com/").expect("url"),
        name: WebsiteName::parse("old").expect("name"),
        regions: vec![region_name("local")],
        interval_seconds: IntervalSecs::parse(180).expect("interval"),
        timeout_ms: TimeoutMs::DEFAULT,
        notify_emails: vec![],
        failures_before_down: None,
        down_policy: None,
        channel_ids: vec![],
        check: None,
    };
    let two_days_ago = Utc::now() - ChronoDuration::days(2);
    stack.bus.publish(&Envelope::new(Event::WebsiteAdded(added), two_days_ago), Some(0)).await.expect("publish");
    let id = &website.to_string();
    let started_at = Utc::now() - ChronoDuration::minutes(60);
    let down = SiteDown {
        website_id: website,
        region: region_name("local"),
        started_at,
        cause: Some(FailureCause::Timeout),
        status_code: None,
        message: None,
    };
    let up = SiteUp {
        website_id: website,
        region: region_name("local"),
        started_at,
        ended_at: started_at + ChronoDuration::minutes(36),
        downtime_seconds: 36 * 60,
    };
    for event in [Event::SiteDown(down), Event::SiteUp(up)] {
        stack.bus.publish(&Envelope::new(event, Utc::now()).by(Actor::System, None), None).await.expect("publish");
    }
    stack.settle().await;

    let (_, body, _) = get(&stack, "/monitor?sort=uptime_24h&limit=2").await;
    assert_eq!(body[0]["id"], id.as_str(), "{body}");
    assert_eq!(body[0]["uptime_24h"], 97.5, "{body}");
    assert_eq!(body[1]["uptime_24h"], 100.0, "{body}");
    // The same figure as the website's own uptime.
    let (_, uptime, _) = get(&stack, &format!("/monitor/{id}/uptime")).await;
    assert_eq!(uptime["uptime_percent"]["1d"], 97.5, "{uptime}");
}

/// Each website's status in `/monitor`, by id.
async fn statuses(stack: &Stack) -> Vec<(String, String)> {
    let (_, body, _) = get(stack, "/monitor?sort=created").await;
    body.as_array()
        .expect("array")
        .iter()
        .map(|w| (w["id"].as_str().unwrap_or_default().to_owned(), w["status"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_either_projection_gives_every_website_its_status_again() {
    let stack = Stack::start(&[]).await;
    fleet(&stack).await;
    let before = statuses(&stack).await;

    for projection in [Projection::Status, Projection::Monitor] {
        projector::replay(&stack.bus, &stack.db.pool, projection, &CancellationToken::new()).await.expect("replay");
        stack.settle().await;
        assert_eq!(statuses(&stack).await, before, "after a replay of {projection:?}");
    }
}

/// A region outage: the region's index, its start and its end (`None`:
/// open).
type Outage = (usize, DateTime<Utc>, Option<DateTime<Utc>>);

/// Inserts a website checked from `regions` regions, and its outages.
async fn outages(db: &Db, policy: &str, regions: usize, spans: &[Outage]) -> Uuid {
    let id = Uuid::now_v7();
    let added = Utc::now() - ChronoDuration::days(3);
    sqlx::query(
        "insert into websites (id, url, name, interval_seconds, timeout_ms, created_at, updated_at, stream_seq, down_policy, status_since)
         values ($1, 'https://example.com/', 'x', 60, 1000, $2, $2, 1, $3, $2)",
    )
    .bind(id)
    .bind(added)
    .bind(policy)
    .execute(&db.pool)
    .await
    .expect("website");
    for r in 0..regions {
        sqlx::query("insert into regions (name, created_at, stream_seq) values ($1, now(), 1) on conflict do nothing")
            .bind(format!("r{r}"))
            .execute(&db.pool)
            .await
            .expect("region");
        sqlx::query("insert into website_regions (website_id, region) values ($1, $2)")
            .bind(id)
            .bind(format!("r{r}"))
            .execute(&db.pool)
            .await
            .expect("website region");
    }
    for (region, start, end) in spans {
        sqlx::query("insert into incidents (website_id, region, started_at, ended_at) values ($1, $2, $3, $4)")
            .bind(id)
            .bind(format!("r{region}"))
            .bind(start)
            .bind(end)
            .execute(&db.pool)
            .await
            .expect("incident");
    }
    id
}

#[tokio::test]
async fn the_uptime_of_the_query_is_the_domain_rule_for_every_policy_and_every_sort() {
    let db = Db::fresh().await;
    let to = Utc::now();
    let at = |hours_ago: i64| Some(to - ChronoDuration::minutes(hours_ago * 60 + 7));
    let cases: Vec<Vec<Outage>> = vec![
        vec![],
        // One outage straddling the window's start, one open.
        vec![(0, to - ChronoDuration::hours(30), at(20)), (0, at(2).expect("t"), None)],
        // Overlapping outages of three regions, touching ones, an open one.
        vec![
            (0, at(10).expect("t"), at(6)),
            (1, at(9).expect("t"), at(4)),
            (2, at(8).expect("t"), at(7)),
            (2, at(7).expect("t"), at(5)),
            (1, at(3).expect("t"), None),
            (0, at(2).expect("t"), at(1)),
        ],
        // Long ago only.
        vec![(1, to - ChronoDuration::hours(40), Some(to - ChronoDuration::hours(30)))],
    ];
    let mut expected = std::collections::HashMap::new();
    for policy in [DownPolicy::Any, DownPolicy::Majority, DownPolicy::All] {
        for spans in &cases {
            let id = outages(&db, policy.as_str(), 3, spans).await;
            let intervals: Vec<_> = spans.iter().map(|(_, s, e)| (*s, *e)).collect();
            let (from, now) = (to - ChronoDuration::hours(24), Utc::now());
            let down = events::outage::downtime_seconds(&intervals, policy, 3, from, now);
            let percent = (1.0 - down as f64 / (now - from).num_seconds() as f64) * 100.0;
            expected.insert(id, (percent, format!("{policy:?} {spans:?}")));
        }
    }
    for sort in [Sort::Uptime24h, Sort::Created] {
        let page = overview::page(&db.pool, &Filter::default(), sort, None, 500).await.expect("page");
        assert_eq!(page.len(), expected.len());
        for entry in &page {
            let (percent, case) = &expected[&entry.website.id];
            // The query counts from its own clock, a few milliseconds on.
            assert!((entry.uptime_24h - percent).abs() < 0.01, "{sort:?} {case}: {} vs {percent}", entry.uptime_24h);
        }
        if sort == Sort::Uptime24h {
            let uptimes: Vec<f64> = page.iter().map(|e| e.uptime_24h).collect();
            assert!(uptimes.windows(2).all(|w| w[0] <= w[1]), "{uptimes:?}");
            assert!(uptimes[0] < 100.0);
        }
    }
}
