//! Every event survives a JSON round trip inside its envelope, and events
//! written by older shapes still decode.

use chrono::{DateTime, TimeZone, Utc};
use events::*;
use uuid::Uuid;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

fn region(name: &str) -> RegionName {
    RegionName::parse(name).unwrap_or_else(|e| panic!("{e}"))
}

fn every_event() -> Vec<Event> {
    let website_id = Uuid::now_v7();
    vec![
        Event::WebsiteAdded(WebsiteAdded {
            website_id,
            url: WebsiteUrl::parse("https://google.com").unwrap_or_else(|e| panic!("{e}")),
            name: WebsiteName::parse("google").unwrap_or_else(|e| panic!("{e}")),
            regions: vec![region("europe"), region("local")],
            interval_seconds: IntervalSecs::parse(60).unwrap_or_else(|e| panic!("{e}")),
            timeout_ms: TimeoutMs::parse(5000).unwrap_or_else(|e| panic!("{e}")),
            notify_emails: vec![EmailAddress::parse("ops@example.com").unwrap_or_else(|e| panic!("{e}"))],
            failures_before_down: FailuresBeforeDown::parse(3).ok(),
            down_policy: Some(DownPolicy::Majority),
            channel_ids: vec![Uuid::now_v7()],
            check: Some(events::check::CheckSpec { keyword: Some("Welcome".into()), ..Default::default() }),
        }),
        Event::WebsiteUpdated(WebsiteUpdated {
            website_id,
            name: Some(WebsiteName::parse("renamed").unwrap_or_else(|e| panic!("{e}"))),
            ..Default::default()
        }),
        Event::WebsiteRemoved(WebsiteRemoved { website_id }),
        Event::RegionAdded(RegionAdded { region: region("europe") }),
        Event::RegionRemoved(RegionRemoved { region: region("europe") }),
        Event::CheckCompleted(CheckCompleted {
            website_id,
            region: region("europe"),
            scheduled_at: at(1_000),
            started_at: at(1_001),
            up: false,
            status_code: Some(503),
            response_ms: Some(120),
            cause: Some(FailureCause::HttpStatus),
            message: Some("503 Service Unavailable".into()),
            cert_not_after: Some(at(90_000)),
        }),
        Event::SiteDown(SiteDown {
            website_id,
            region: region("europe"),
            started_at: at(1_000),
            cause: Some(FailureCause::Timeout),
            status_code: None,
            message: None,
        }),
        Event::SiteUp(SiteUp {
            website_id,
            region: region("europe"),
            started_at: at(1_000),
            ended_at: at(1_360),
            downtime_seconds: 360,
        }),
        Event::TokenCreated(TokenCreated {
            token_id: Uuid::now_v7(),
            name: TokenName::parse("ci").unwrap_or_else(|e| panic!("{e}")),
            scope: Scope::Write,
            secret_hash: events::access::secret_hash("secret"),
            expires_at: Some(at(9_000)),
        }),
        Event::TokenRevoked(TokenRevoked { token_id: Uuid::now_v7() }),
        Event::ChannelAdded(ChannelAdded {
            channel_id: Uuid::now_v7(),
            name: ChannelName::parse("on-call").unwrap_or_else(|e| panic!("{e}")),
            kind: ChannelKind::Webhook,
            target: "https://hooks.example.com/…".into(),
            sealed: "v1.AAAA".into(),
            default: true,
        }),
        Event::ChannelUpdated(ChannelUpdated { channel_id: Uuid::now_v7(), enabled: Some(true), ..Default::default() }),
        Event::ChannelDisabled(ChannelDisabled { channel_id: Uuid::now_v7(), reason: "410 Gone".into() }),
        Event::ChannelRemoved(ChannelRemoved { channel_id: Uuid::now_v7() }),
        Event::WebsitePaused(WebsitePaused { website_id }),
        Event::WebsiteResumed(WebsiteResumed { website_id }),
        Event::MaintenanceScheduled(MaintenanceScheduled {
            window_id: Uuid::now_v7(),
            name: "deploy".into(),
            website_ids: vec![website_id],
            all_websites: false,
            timing: events::maintenance::Timing::recurring("0 2 * * Sun", 60, "Europe/Berlin")
                .unwrap_or_else(|e| panic!("{e:?}")),
        }),
        Event::MaintenanceUpdated(MaintenanceUpdated {
            window_id: Uuid::now_v7(),
            name: Some("db".into()),
            ..Default::default()
        }),
        Event::MaintenanceEnded(MaintenanceEnded { window_id: Uuid::now_v7(), ended_at: at(3_000) }),
        Event::MaintenanceRemoved(MaintenanceRemoved { window_id: Uuid::now_v7() }),
        Event::CertificateExpiring(CertificateExpiring {
            website_id,
            region: region("europe"),
            not_after: at(90_000),
            days_left: 6,
            threshold_days: 7,
        }),
        Event::StatusPageCreated(StatusPageCreated {
            page_id: Uuid::now_v7(),
            slug: events::status_page::Slug::parse("acme").unwrap_or_else(|e| panic!("{e}")),
            title: "Acme status".into(),
            description: Some("Our services".into()),
            logo_url: None,
            groups: vec![events::status_page::PageGroup {
                name: "Web".into(),
                websites: vec![events::status_page::PageWebsite { website_id, name: "Shop".into(), show_url: true }],
            }],
        }),
        Event::StatusPageUpdated(StatusPageUpdated {
            page_id: Uuid::now_v7(),
            title: Some("Acme".into()),
            ..Default::default()
        }),
        Event::StatusPageRemoved(StatusPageRemoved { page_id: Uuid::now_v7() }),
        Event::StatusSubscriberAdded(StatusSubscriberAdded {
            page_id: Uuid::now_v7(),
            subscriber_id: Uuid::now_v7(),
            email: EmailAddress::parse("visitor@example.com").unwrap_or_else(|e| panic!("{e}")),
            confirm_hash: events::access::secret_hash("confirm"),
            unsubscribe_hash: events::access::secret_hash("unsubscribe"),
        }),
        Event::StatusSubscriberConfirmed(StatusSubscriberConfirmed {
            page_id: Uuid::now_v7(),
            subscriber_id: Uuid::now_v7(),
        }),
        Event::StatusSubscriberRemoved(StatusSubscriberRemoved {
            page_id: Uuid::now_v7(),
            subscriber_id: Uuid::now_v7(),
        }),
        Event::IncidentUpdatePosted(IncidentUpdatePosted {
            website_id,
            incident_id: events::status_page::incident_id(website_id, at(1_000)),
            update_id: Uuid::now_v7(),
            status: events::status_page::IncidentStatus::Identified,
            message: "A database is full".into(),
            title: Some("Checkout unavailable".into()),
        }),
    ]
}

#[test]
fn every_event_round_trips_through_json() {
    let events = every_event();
    assert_eq!(events.len(), events::event::KNOWN_TYPES.len());
    for event in events {
        let actor = Actor::Token { token_id: Uuid::now_v7(), name: "ci".into() };
        let envelope = Envelope::new(event, at(2_000)).by(actor, Some(Uuid::now_v7()));
        let decoded = Envelope::from_json(&envelope.to_json()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded, envelope);
    }
}

#[test]
fn the_envelope_has_the_documented_fields() {
    let envelope = Envelope::new(Event::RegionAdded(RegionAdded { region: region("local") }), at(0));
    let json: serde_json::Value = serde_json::from_slice(&envelope.to_json()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["type"], "RegionAdded");
    assert_eq!(json["version"], 1);
    assert_eq!(json["aggregate_id"], "local");
    assert_eq!(json["occurred_at"], "1970-01-01T00:00:00Z");
    assert_eq!(json["data"]["region"], "local");
    assert_eq!(json["id"], envelope.id.to_string());
    assert_eq!(envelope.id.get_version_num(), 7);
}

#[test]
fn a_website_added_without_the_newer_optional_fields_still_decodes() {
    let old = br#"{
        "id": "0192f3c4-0000-7000-8000-000000000001",
        "type": "WebsiteAdded", "version": 1,
        "occurred_at": "2026-01-01T00:00:00Z",
        "aggregate_id": "0192f3c4-0000-7000-8000-0000000000aa",
        "data": {
            "website_id": "0192f3c4-0000-7000-8000-0000000000aa",
            "url": "https://google.com/", "name": "google", "regions": ["local"]
        }
    }"#;
    let envelope = Envelope::from_json(old).unwrap_or_else(|e| panic!("{e}"));
    let Event::WebsiteAdded(added) = envelope.event else { panic!("wrong type") };
    assert_eq!(added.interval_seconds, IntervalSecs::DEFAULT);
    assert_eq!(added.timeout_ms, TimeoutMs::DEFAULT);
    assert!(added.notify_emails.is_empty());
    assert_eq!(added.failures_before_down, None);
    assert_eq!(envelope.actor, Actor::Unknown, "events older than actors read as unknown");
}

#[test]
fn a_check_without_optional_fields_and_with_a_future_cause_still_decodes() {
    let old = br#"{
        "id": "0192f3c4-0000-7000-8000-000000000002",
        "type": "CheckCompleted", "version": 1,
        "occurred_at": "2026-01-01T00:00:00Z",
        "aggregate_id": "0192f3c4-0000-7000-8000-0000000000aa",
        "data": {
            "website_id": "0192f3c4-0000-7000-8000-0000000000aa",
            "region": "local",
            "scheduled_at": "2026-01-01T00:00:00Z",
            "started_at": "2026-01-01T00:00:00Z",
            "up": false,
            "cause": "quantum_flux"
        }
    }"#;
    let envelope = Envelope::from_json(old).unwrap_or_else(|e| panic!("{e}"));
    let Event::CheckCompleted(check) = envelope.event else { panic!("wrong type") };
    assert_eq!(check.cause, Some(FailureCause::Other));
    assert_eq!(check.status_code, None);
}

#[test]
fn an_event_type_from_a_newer_build_is_reported_as_unknown_not_malformed() {
    let newer = br#"{"id":"0192f3c4-0000-7000-8000-000000000003","type":"WebsiteArchived","version":1,
        "occurred_at":"2026-01-01T00:00:00Z","aggregate_id":"x","data":{}}"#;
    assert!(matches!(Envelope::from_json(newer), Err(DecodeError::UnknownType(t)) if t == "WebsiteArchived"));
    assert!(matches!(Envelope::from_json(b"{not json"), Err(DecodeError::Malformed(_))));
}

#[test]
fn subjects_name_the_aggregate() {
    let id = Uuid::nil();
    assert_eq!(events::subject::website(id), format!("monitor.website.{id}"));
    assert_eq!(events::subject::region(&region("europe")), "monitor.region.europe");
    assert_eq!(events::subject::check(&region("europe"), id), format!("checks.europe.{id}"));
    assert_eq!(events::subject::incident(id), format!("incidents.{id}"));
    assert_eq!(events::subject::status_page(id), format!("monitor.status_page.{id}"));
}
