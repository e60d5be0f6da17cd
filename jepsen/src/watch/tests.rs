use super::*;

fn kv(
    key: &str,
    value: &str,
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: value.to_owned(),
        create_revision,
        mod_revision,
        version,
        lease: 0,
    }
}

fn put(
    key: &str,
    value: &str,
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
) -> Event {
    Event {
        kind: EventType::Put,
        kv: kv(key, value, create_revision, mod_revision, version),
        prev_kv: None,
    }
}

fn del(key: &str, mod_revision: Revision) -> Event {
    Event {
        kind: EventType::Delete,
        kv: KeyValue {
            key: key.to_owned(),
            mod_revision,
            ..KeyValue::default()
        },
        prev_kv: None,
    }
}

fn with_prev(mut event: Event, prev: KeyValue) -> Event {
    event.prev_kv = Some(prev);
    event
}

fn events(events: Vec<Event>) -> WatchResponse {
    let header_revision = events.iter().map(Event::revision).max().unwrap_or(0);
    WatchResponse {
        header_revision,
        events,
        ..WatchResponse::default()
    }
}

fn progress(revision: Revision) -> WatchResponse {
    WatchResponse {
        header_revision: revision,
        ..WatchResponse::default()
    }
}

fn created(revision: Revision) -> WatchResponse {
    WatchResponse {
        header_revision: revision,
        created: true,
        ..WatchResponse::default()
    }
}

/// Keys `a` and `b`; `z` is outside.
fn a_to_c() -> KeyRange {
    KeyRange::Range {
        key: "a".into(),
        range_end: "c".into(),
    }
}

fn watcher(
    id: u64,
    start_revision: Revision,
    prev_kv: bool,
    responses: Vec<WatchResponse>,
) -> Watcher {
    Watcher {
        id,
        request: WatchRequest {
            range: a_to_c(),
            start_revision,
            prev_kv,
            filters: Vec::new(),
            progress_notify: true,
        },
        resumes: None,
        responses,
    }
}

/// From the empty store:
/// 2: put a=1 · 3: put a=2, put b=1 (one txn) · 4: delete a · 5: put z=1 ·
/// 6: put a=3 (a new create) · 7: put b=2
fn truth() -> GroundTruth {
    let revision = |revision, events| RevisionEvents { revision, events };
    GroundTruth {
        first_revision: 1,
        last_revision: 7,
        compact_revision: 0,
        revisions: vec![
            revision(2, vec![put("a", "1", 2, 2, 1)]),
            revision(3, vec![put("a", "2", 2, 3, 2), put("b", "1", 3, 3, 1)]),
            revision(4, vec![del("a", 4)]),
            revision(5, vec![put("z", "1", 5, 5, 1)]),
            revision(6, vec![put("a", "3", 6, 6, 1)]),
            revision(7, vec![put("b", "2", 3, 7, 2)]),
        ],
    }
}

/// Responses of a faithful watch of a..c from revision 2 with prev_kv, one per revision.
fn faithful() -> Vec<WatchResponse> {
    vec![
        created(1),
        events(vec![put("a", "1", 2, 2, 1)]),
        events(vec![
            with_prev(put("a", "2", 2, 3, 2), kv("a", "1", 2, 2, 1)),
            put("b", "1", 3, 3, 1),
        ]),
        events(vec![with_prev(del("a", 4), kv("a", "2", 2, 3, 2))]),
        progress(5),
        events(vec![put("a", "3", 6, 6, 1)]),
        events(vec![with_prev(
            put("b", "2", 3, 7, 2),
            kv("b", "1", 3, 3, 1),
        )]),
        progress(7),
    ]
}

fn analyse(watchers: &[Watcher], truth: Option<&GroundTruth>) -> Analysis {
    check(watchers, truth, &Options::default()).expect("well-formed input")
}

/// The evidence of `guarantee`, which must be violated.
fn must_violate(analysis: &Analysis, guarantee: Guarantee) -> Vec<String> {
    let report = analysis.report(guarantee);
    assert_eq!(
        report.verdict,
        Verdict::Violated,
        "{guarantee}:\n{analysis}"
    );
    assert!(!analysis.valid);
    report.evidence.iter().map(Violation::to_string).collect()
}

fn verdicts(analysis: &Analysis) -> Vec<(Guarantee, Verdict)> {
    analysis
        .guarantees
        .iter()
        .map(|r| (r.guarantee, r.verdict))
        .collect()
}

#[test]
fn a_faithful_watch_keeps_every_guarantee() {
    let truth = truth();
    let analysis = analyse(&[watcher(1, 2, true, faithful())], Some(&truth));
    assert!(analysis.valid, "{analysis}");
    assert_eq!(analysis.events, 6);
    let mut expected: Vec<(Guarantee, Verdict)> = Guarantee::ALL
        .iter()
        .map(|&g| (g, Verdict::Holds))
        .collect();
    expected[9].1 = Verdict::NotChecked; // Consistent needs a second watcher
    assert_eq!(verdicts(&analysis), expected, "{analysis}");
    // Without ground truth what needs it is not checked, and nothing is violated.
    let blind = analyse(&[watcher(1, 2, true, faithful())], None);
    assert!(blind.valid, "{blind}");
    assert_eq!(blind.verdict(Guarantee::Reliable), Verdict::NotChecked);
    assert_eq!(
        blind.report(Guarantee::Reliable).note.as_deref(),
        Some("needs the ground truth")
    );
}

#[test]
fn a_watch_from_now_is_checked_from_its_first_event() {
    let truth = truth();
    let from_now = watcher(
        1,
        0,
        false,
        vec![
            created(5),
            events(vec![put("a", "3", 6, 6, 1)]),
            events(vec![put("b", "2", 3, 7, 2)]),
        ],
    );
    let analysis = analyse(&[from_now], Some(&truth));
    assert!(analysis.valid, "{analysis}");
    assert_eq!(analysis.verdict(Guarantee::Resumable), Verdict::NotChecked);
    assert_eq!(
        analysis.verdict(Guarantee::Bookmarkable),
        Verdict::NotChecked
    );
}

#[test]
fn ordered_events_never_go_back() {
    let mut responses = faithful();
    responses.swap(5, 6); // revision 7 before revision 6
    let analysis = analyse(&[watcher(1, 2, true, responses)], None);
    assert_eq!(
        must_violate(&analysis, Guarantee::Ordered),
        vec![
            r#"watcher 1, response 6: PUT "a" at revision 6 (value "3", create_revision 6, version 1) came after PUT "b" at revision 7 (value "2", create_revision 3, version 2) (response 5)"#
        ]
    );
}

#[test]
fn unique_events_are_never_delivered_twice() {
    let mut responses = faithful();
    responses.insert(
        4,
        events(vec![with_prev(del("a", 4), kv("a", "2", 2, 3, 2))]),
    );
    let analysis = analyse(&[watcher(1, 2, true, responses)], None);
    let evidence = must_violate(&analysis, Guarantee::Unique);
    assert_eq!(
        evidence,
        vec![
            r#"watcher 1, response 4: DELETE "a" at revision 4 delivered again (first in response 3)"#
        ]
    );
}

#[test]
fn atomic_revisions_are_never_split() {
    let mut responses = faithful();
    responses.splice(
        2..3,
        [
            events(vec![with_prev(
                put("a", "2", 2, 3, 2),
                kv("a", "1", 2, 2, 1),
            )]),
            events(vec![put("b", "1", 3, 3, 1)]),
        ],
    );
    let truth = truth();
    let analysis = analyse(&[watcher(1, 2, true, responses)], Some(&truth));
    assert_eq!(
        must_violate(&analysis, Guarantee::Atomic),
        vec!["watcher 1, response 3: the events of revision 3 are split across responses [2, 3]"]
    );
    // Everything was delivered, in order, once.
    for g in [Guarantee::Reliable, Guarantee::Unique, Guarantee::Ordered] {
        assert_eq!(analysis.verdict(g), Verdict::Holds, "{g}");
    }
}

#[test]
fn atomic_with_ground_truth_sees_a_revision_delivered_in_part() {
    let mut responses = faithful();
    responses[2] = events(vec![with_prev(
        put("a", "2", 2, 3, 2),
        kv("a", "1", 2, 2, 1),
    )]);
    let truth = truth();
    let analysis = analyse(&[watcher(1, 2, true, responses)], Some(&truth));
    assert_eq!(
        must_violate(&analysis, Guarantee::Atomic),
        vec![
            r#"watcher 1, response 2: the response holds 1 of the 2 events of revision 3; missing: ["b"]"#
        ]
    );
    must_violate(&analysis, Guarantee::Reliable);
}

#[test]
fn reliable_watch_drops_no_event() {
    let mut responses = faithful();
    responses.remove(3); // the delete at revision 4
    let truth = truth();
    let analysis = analyse(&[watcher(1, 2, true, responses.clone())], Some(&truth));
    assert_eq!(
        must_violate(&analysis, Guarantee::Reliable),
        vec![
            r#"watcher 1: DELETE "a" at revision 4 was never delivered (between delivered revisions 3 and 6)"#
        ]
    );
    // The notification at 5 also vouched for revision 4.
    must_violate(&analysis, Guarantee::Bookmarkable);
    assert!(analyse(&[watcher(1, 2, true, responses)], None).valid);
}

#[test]
fn reliable_watch_invents_no_event() {
    let mut responses = faithful();
    responses[5] = events(vec![put("a", "3", 6, 6, 1), put("b", "9", 3, 6, 2)]);
    let truth = truth();
    let analysis = analyse(&[watcher(1, 2, false, strip_prev(responses))], Some(&truth));
    let evidence = must_violate(&analysis, Guarantee::Reliable);
    assert_eq!(
        evidence,
        vec![
            r#"watcher 1, response 5: PUT "b" at revision 6 (value "9", create_revision 3, version 2) is not in the ground truth"#
        ]
    );
}

fn strip_prev(mut responses: Vec<WatchResponse>) -> Vec<WatchResponse> {
    for response in &mut responses {
        for event in &mut response.events {
            event.prev_kv = None;
        }
    }
    responses
}

/// Watcher 1 breaks after revision 3; watcher 2 resumes it from revision 4.
fn broken_and_resumed(resumed: Vec<WatchResponse>, start_revision: Revision) -> Vec<Watcher> {
    let broken = watcher(1, 2, true, faithful()[..3].to_vec());
    let mut resumed = watcher(2, start_revision, true, resumed);
    resumed.resumes = Some(1);
    vec![broken, resumed]
}

#[test]
fn resumable_watch_continues_without_gap_or_repeat() {
    let truth = truth();
    let good = broken_and_resumed(faithful()[3..].to_vec(), 4);
    let analysis = analyse(&good, Some(&truth));
    assert!(analysis.valid, "{analysis}");
    assert_eq!(analysis.verdict(Guarantee::Resumable), Verdict::Holds);
    assert_eq!(
        analysis.verdict(Guarantee::Consistent),
        Verdict::NotChecked,
        "their spans do not overlap"
    );

    let gap = broken_and_resumed(faithful()[5..].to_vec(), 4);
    let analysis = analyse(&gap, Some(&truth));
    assert_eq!(
        must_violate(&analysis, Guarantee::Resumable),
        vec![
            r#"watcher 2, response 0: the first event delivered is PUT "a" at revision 6 (value "3", create_revision 6, version 1), but the first at or after start revision 4 is DELETE "a" at revision 4"#
        ]
    );
    assert_eq!(
        analysis.verdict(Guarantee::Reliable),
        Verdict::Holds,
        "no gap after the first event"
    );

    let repeat = broken_and_resumed(faithful()[2..].to_vec(), 4);
    let evidence = must_violate(&analyse(&repeat, None), Guarantee::Resumable);
    assert!(
        evidence
            .iter()
            .any(|e| e.contains("precedes the start revision 4")),
        "{evidence:?}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e.contains("already delivered to watcher 1")),
        "{evidence:?}"
    );
}

#[test]
fn a_resume_that_skips_revisions_is_an_input_error() {
    let skipping = broken_and_resumed(faithful()[5..].to_vec(), 6);
    assert!(matches!(
        check(&skipping, None, &Options::default()),
        Err(Error::ResumeLeavesGap {
            watcher: 2,
            resumes: 1,
            start_revision: 6,
            known_through: 3
        })
    ));
    let mut orphan = broken_and_resumed(Vec::new(), 4);
    orphan[1].resumes = Some(9);
    assert!(matches!(
        check(&orphan, None, &Options::default()),
        Err(Error::UnknownResumedWatcher {
            watcher: 2,
            resumes: 9
        })
    ));
}

#[test]
fn bookmarkable_notifications_vouch_for_everything_before_them() {
    let truth = truth();
    // Progress at 5 sent before the delete at 4.
    let mut early = faithful();
    early.swap(3, 4);
    let analysis = analyse(&[watcher(1, 2, true, early)], Some(&truth));
    assert_eq!(
        must_violate(&analysis, Guarantee::Bookmarkable),
        vec![
            r#"watcher 1, response 3: progress notification at revision 5, but DELETE "a" at revision 4 had not been delivered"#,
            r#"watcher 1, response 4: DELETE "a" at revision 4 delivered after a progress notification at revision 5 (response 3)"#,
        ]
    );
    // A notification below a delivered event, and one going backwards.
    let mut backwards = faithful();
    backwards.push(progress(6));
    let evidence = must_violate(
        &analyse(&[watcher(1, 2, true, backwards)], None),
        Guarantee::Bookmarkable,
    );
    assert_eq!(evidence.len(), 2, "{evidence:?}");
    assert!(
        evidence[0].contains("after PUT \"b\" at revision 7"),
        "{evidence:?}"
    );
    assert!(
        evidence[1].contains("after one at revision 7"),
        "{evidence:?}"
    );
}

#[test]
fn prev_kv_is_the_previous_version_and_only_when_asked() {
    let truth = truth();
    let mut wrong = faithful();
    wrong[6] = events(vec![with_prev(
        put("b", "2", 3, 7, 2),
        kv("b", "0", 3, 2, 1),
    )]);
    assert_eq!(
        must_violate(
            &analyse(&[watcher(1, 2, true, wrong)], Some(&truth)),
            Guarantee::PrevKv
        ),
        vec![
            r#"watcher 1, response 6: PUT "b" at revision 7 (value "2", create_revision 3, version 2) has prev_kv "b" = "0" (create_revision 3, mod_revision 2, version 1), but the previous version was "b" = "1" (create_revision 3, mod_revision 3, version 1)"#
        ]
    );

    let missing = strip_prev(faithful());
    let analysis = analyse(&[watcher(1, 2, true, missing.clone())], Some(&truth));
    assert_eq!(
        analysis.report(Guarantee::PrevKv).violations,
        3,
        "{analysis}"
    );
    // …unless the previous versions were compacted away.
    let mut compacted = truth.clone();
    compacted.compact_revision = 7;
    assert!(analyse(&[watcher(1, 2, true, missing)], Some(&compacted)).valid);

    let unasked = analyse(&[watcher(1, 2, false, faithful())], Some(&truth));
    assert_eq!(unasked.report(Guarantee::PrevKv).violations, 3, "{unasked}");

    // A put claiming a prev_kv of its own creation: inconsistent even without the truth.
    let mut created_over = faithful();
    created_over[1] = events(vec![with_prev(
        put("a", "1", 2, 2, 1),
        kv("a", "0", 1, 1, 1),
    )]);
    must_violate(
        &analyse(&[watcher(1, 2, true, created_over)], None),
        Guarantee::PrevKv,
    );
}

#[test]
fn filters_and_range_are_respected() {
    let truth = truth();
    let mut no_put = watcher(1, 2, false, vec![events(vec![del("a", 4)])]);
    no_put.request.filters = vec![Filter::NoPut];
    let analysis = analyse(std::slice::from_ref(&no_put), Some(&truth));
    assert!(analysis.valid, "{analysis}");
    assert_eq!(analysis.verdict(Guarantee::Filter), Verdict::Holds);

    no_put.responses.push(events(vec![put("a", "3", 6, 6, 1)]));
    assert_eq!(
        must_violate(
            &analyse(std::slice::from_ref(&no_put), None),
            Guarantee::Filter
        ),
        vec![
            r#"watcher 1, response 1: PUT "a" at revision 6 (value "3", create_revision 6, version 1) delivered despite filter NoPut"#
        ]
    );
    let outside = watcher(2, 2, false, vec![events(vec![put("z", "1", 5, 5, 1)])]);
    let evidence = must_violate(&analyse(&[outside], None), Guarantee::Filter);
    assert!(
        evidence[0].contains("outside the watched range"),
        "{evidence:?}"
    );
}

#[test]
fn is_create_marks_exactly_the_creates() {
    let truth = truth();
    // Revision 6 recreates a after its delete: claiming it continues the old a is wrong.
    let mut continued = strip_prev(faithful());
    continued[5] = events(vec![put("a", "3", 2, 6, 3)]);
    let analysis = analyse(&[watcher(1, 2, false, continued.clone())], Some(&truth));
    assert_eq!(
        must_violate(&analysis, Guarantee::IsCreate),
        vec![
            r#"watcher 1, response 5: PUT "a" at revision 6 (value "3", create_revision 2, version 3) is not a create (create_revision ≠ mod_revision), but the key did not exist before"#
        ]
    );
    assert!(
        analyse(&[watcher(1, 2, false, continued)], None)
            .report(Guarantee::IsCreate)
            .violations
            == 0
    );

    let mut version_two_create = strip_prev(faithful());
    version_two_create[1] = events(vec![put("a", "1", 2, 2, 2)]);
    must_violate(
        &analyse(&[watcher(1, 2, false, version_two_create)], None),
        Guarantee::IsCreate,
    );
}

#[test]
fn watchers_of_one_range_agree_where_they_overlap() {
    let one = watcher(1, 2, true, faithful());
    let two = watcher(2, 3, true, faithful()[2..].to_vec());
    let analysis = analyse(&[one.clone(), two], None);
    assert!(analysis.valid, "{analysis}");
    assert_eq!(analysis.verdict(Guarantee::Consistent), Verdict::Holds);

    let mut lossy = faithful()[2..].to_vec();
    lossy.remove(3); // revision 6
    let analysis = analyse(&[one.clone(), watcher(2, 3, true, lossy)], None);
    assert_eq!(
        must_violate(&analysis, Guarantee::Consistent),
        vec![
            r#"watcher 1, response 5: watchers 1 and 2 (same range, both complete over revisions 3..=7) diverge: watcher 1 saw PUT "a" at revision 6 (value "3", create_revision 6, version 1) where watcher 2 saw PUT "b" at revision 7 (value "2", create_revision 3, version 2)"#
        ]
    );

    // A different range is not compared.
    let mut other = watcher(3, 2, true, Vec::new());
    other.request.range = KeyRange::Prefix("a".into());
    other.responses = vec![events(vec![put("a", "1", 2, 2, 1)]), progress(7)];
    let analysis = analyse(&[one, other], None);
    assert_eq!(analysis.verdict(Guarantee::Consistent), Verdict::NotChecked);
}

#[test]
fn key_ranges_follow_etcd() {
    assert!(KeyRange::Key("a".into()).contains("a"));
    assert!(!KeyRange::Key("a".into()).contains("ab"));
    assert!(KeyRange::Prefix("/a/".into()).contains("/a/x"));
    assert!(!KeyRange::Prefix("/a/".into()).contains("/b"));
    assert!(a_to_c().contains("b") && !a_to_c().contains("c"));
    assert!(
        KeyRange::FromKey("m".into()).contains("z") && !KeyRange::FromKey("m".into()).contains("a")
    );
}

#[test]
fn malformed_input_is_an_error_not_a_verdict() {
    let twice = [
        watcher(1, 2, true, Vec::new()),
        watcher(1, 3, true, Vec::new()),
    ];
    assert!(matches!(
        check(&twice, None, &Options::default()),
        Err(Error::DuplicateWatcher { id: 1 })
    ));
    let mut unordered = truth();
    unordered.revisions.swap(0, 1);
    assert!(matches!(
        check(&[], Some(&unordered), &Options::default()),
        Err(Error::TruthOrder {
            revision: 2,
            previous: 3
        })
    ));
    let mut outside = truth();
    outside.last_revision = 6;
    assert!(matches!(
        check(&[], Some(&outside), &Options::default()),
        Err(Error::TruthSpan { revision: 7, .. })
    ));
    let mut mislabelled = truth();
    mislabelled.revisions[0].events[0].kv.mod_revision = 9;
    assert!(matches!(
        check(&[], Some(&mislabelled), &Options::default()),
        Err(Error::TruthEventRevision { revision: 2, .. })
    ));
}

#[test]
fn the_documented_watcher_parses_and_round_trips() {
    let text = r#"{"id":1,"request":{"range":{"prefix":"/a/"},"start_revision":5,"prev_kv":true},
 "responses":[
  {"header_revision":4,"created":true},
  {"header_revision":6,"events":[{"type":"PUT","kv":{"key":"/a/x","value":"1","create_revision":6,"mod_revision":6,"version":1}}]},
  {"header_revision":9},
  {"header_revision":10,"events":[{"type":"DELETE","kv":{"key":"/a/x","mod_revision":10},
                                   "prev_kv":{"key":"/a/x","value":"1","create_revision":6,"mod_revision":6,"version":1}}]}]}"#;
    let parsed: Watcher = serde_json::from_str(text).unwrap();
    assert_eq!(parsed.request.range, KeyRange::Prefix("/a/".into()));
    assert!(parsed.responses[2].is_progress_notify());
    assert!(!parsed.responses[0].is_progress_notify());
    let back: Watcher = serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
    assert_eq!(back, parsed);
    let analysis = analyse(&[parsed], None);
    assert!(analysis.valid, "{analysis}");

    let mut filtered = watcher(1, 0, false, Vec::new());
    filtered.request.filters = vec![Filter::NoPut, Filter::NoDelete];
    let json = serde_json::to_value(&filtered).unwrap();
    assert_eq!(
        json["request"]["filters"],
        serde_json::json!(["NOPUT", "NODELETE"])
    );
    assert_eq!(
        json["request"]["range"],
        serde_json::json!({"range": {"key": "a", "range_end": "c"}})
    );
}

#[test]
fn analysis_serializes_to_json() {
    let mut responses = faithful();
    responses.remove(3);
    let truth = truth();
    let analysis = analyse(&[watcher(1, 2, true, responses)], Some(&truth));
    let json = serde_json::to_value(&analysis).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["guarantees"][3]["guarantee"], "Reliable");
    assert_eq!(json["guarantees"][3]["verdict"], "violated");
    assert_eq!(json["guarantees"][3]["evidence"][0]["revision"], 4);
    assert_eq!(json["guarantees"][6]["guarantee"], "PrevKV");
    assert_eq!(json["guarantees"][9]["verdict"], "not_checked");
    let back: Analysis = serde_json::from_value(json).unwrap();
    assert_eq!(back, analysis);
    let text = analysis.to_string();
    assert!(text.contains("  Reliable: VIOLATED ×1\n    watcher 1: DELETE \"a\" at revision 4 was never delivered"), "{text}");
}

#[test]
fn evidence_is_bounded_but_every_violation_is_counted() {
    let responses: Vec<WatchResponse> = (0..30)
        .map(|_| events(vec![put("a", "1", 2, 2, 1)]))
        .collect();
    let options = Options {
        evidence_per_guarantee_max: 2,
    };
    let analysis = check(&[watcher(1, 2, false, responses)], None, &options).unwrap();
    let unique = analysis.report(Guarantee::Unique);
    assert_eq!((unique.violations, unique.evidence.len()), (29, 2));
}
