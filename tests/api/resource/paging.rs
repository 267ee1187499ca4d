//! Keyset paging: every surviving partner exactly once while partners come and go.

use super::*;

/// Asserts `link` is an absolute URL on the collection carrying `options` and a skip token.
fn assert_next_link(app: &TestApp, link: &str, options: &[&str]) {
    assert!(
        link.starts_with(&format!("{}{COLLECTION}?", app.root)),
        "absolute, on our root: {link}"
    );
    assert!(reqwest::Url::parse(link).is_ok(), "{link}");
    assert!(link.contains("$skiptoken="), "{link}");
    for option in options {
        assert!(link.contains(option), "{option} carried in {link}");
    }
}

/// The partners of a walk through the pages: those alive now, those alive since the walk
/// began, and those returned so far, in order.
struct Walk {
    live: BTreeSet<String>,
    survivors: BTreeSet<String>,
    seen: Vec<String>,
    seen_once: HashSet<String>,
}

impl Walk {
    fn new(live: BTreeSet<String>) -> Self {
        Self {
            survivors: live.clone(),
            live,
            seen: Vec::new(),
            seen_once: HashSet::new(),
        }
    }

    /// Records that page `page` returned `id`, which no page may have returned before.
    fn returned(&mut self, page: usize, id: &str) {
        assert!(
            self.seen_once.insert(id.to_owned()),
            "page {page}: {id} returned twice"
        );
        self.seen.push(id.to_owned());
    }

    /// Deletes the partner `id` through the API.
    async fn delete(&mut self, app: &TestApp, id: &str) {
        assert_eq!(app.delete_partner(id).await.status(), 204);
        self.live.remove(id);
        self.survivors.remove(id);
    }

    /// Those of `ids` no page returned.
    fn unreturned<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> Vec<&'a String> {
        ids.into_iter()
            .filter(|id| !self.seen_once.contains(*id))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_1000_partners_by_37_returns_every_survivor_once_in_id_order_while_partners_come_and_go()
 {
    let app = Arc::new(spawn_app().await);
    let bodies = (1..=1000)
        .map(|n| json!({ "displayName": format!("Walk Partner {n:04}") }))
        .collect();
    let created = create_all(&app, bodies, 16).await;
    let initial: BTreeSet<String> = created
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(initial.len(), 1000);
    let mut walk = Walk::new(initial.clone());
    let mut added = BTreeSet::new();
    let mut deleted_unseen = BTreeSet::new();
    let mut url = format!("{}?$top=37&$count=true", app.collection_url());
    let mut pages = 0;

    loop {
        let response = app.get_url(&url).await;
        assert_eq!(response.status(), 200, "{url}");
        let page = json_body(response).await;
        pages += 1;
        let ids = ids_of(&page);
        assert_eq!(
            page["@odata.count"],
            json!(walk.live.len()),
            "page {pages}: the count of the partners alive now"
        );
        for id in &ids {
            assert!(walk.live.contains(id), "page {pages}: {id} is not alive");
            if let Some(last) = walk.seen.last() {
                assert!(
                    id > last,
                    "page {pages}: {id} after {last} breaks the id order"
                );
            }
            walk.returned(pages, id);
        }
        let Some(link) = page.get("@odata.nextLink") else {
            break;
        };
        let link = link.as_str().expect("a link is a string").to_owned();
        assert_eq!(ids.len(), 37, "page {pages} is full when more remain");
        assert_next_link(&app, &link, &["$top=37", "$count=true"]);
        assert!(pages < 60, "the walk ends");

        // Between pages: two new partners, one unseen and one seen partner deleted.
        let fresh = create_all(
            &app,
            (0..2)
                .map(|k| json!({ "displayName": format!("Walk New {pages:02}-{k}") }))
                .collect(),
            2,
        )
        .await;
        for entity in fresh {
            let id = entity["id"].as_str().expect("id").to_owned();
            walk.live.insert(id.clone());
            added.insert(id);
        }
        let last = walk.seen.last().expect("a page was seen").clone();
        let unseen: Vec<&String> = walk.survivors.range(last.clone()..).skip(1).collect();
        if let Some(victim) = unseen.get(unseen.len() / 2).map(|id| (*id).clone()) {
            walk.delete(&app, &victim).await;
            deleted_unseen.insert(victim);
        }
        let victim = walk
            .seen
            .iter()
            .rev()
            .skip(pages * 3 % walk.seen.len())
            .find(|id| walk.live.contains(*id))
            .or_else(|| walk.seen.iter().find(|id| walk.live.contains(*id)))
            .cloned()
            .expect("a seen partner is still alive");
        walk.delete(&app, &victim).await;
        url = link;
    }

    let never_returned = walk.unreturned(&walk.survivors);
    assert!(
        never_returned.is_empty(),
        "partners alive for the whole walk but skipped: {never_returned:?}"
    );
    let resurrected: Vec<_> = deleted_unseen
        .iter()
        .filter(|id| walk.seen_once.contains(*id))
        .collect();
    assert!(
        resurrected.is_empty(),
        "deleted before their page: {resurrected:?}"
    );
    let strangers: Vec<_> = walk
        .seen_once
        .iter()
        .filter(|id| !initial.contains(*id) && !added.contains(*id))
        .collect();
    assert!(strangers.is_empty(), "{strangers:?}");
    assert!(
        pages >= 27,
        "1000 partners by 37 take at least 27 pages, took {pages}"
    );
    println!(
        "paging: {pages} pages, {} returned, {} survivors, {} added during the walk ({} of them returned), {} deleted",
        walk.seen.len(),
        walk.survivors.len(),
        added.len(),
        added
            .iter()
            .filter(|id| walk.seen_once.contains(*id))
            .count(),
        initial.len() - walk.survivors.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_filtered_walk_by_display_name_descending_returns_every_surviving_match_once_in_name_order()
 {
    let app = Arc::new(spawn_app().await);
    let seeded = seed(&app).await;
    let matches = |name: &str| name.trim().to_lowercase().starts_with("partner 1");
    // Name keys by id, for every partner that ever matched.
    let mut key_of: std::collections::HashMap<String, String> = seeded
        .iter()
        .filter(|s| matches(&s.name))
        .map(|s| (s.id.clone(), s.key()))
        .collect();
    let mut walk = Walk::new(key_of.keys().cloned().collect());
    let mut ahead_added = BTreeSet::new();
    let query = "$orderby=displayName%20desc&$filter=startswith(displayName,%27Partner%201%27)&$top=37&$count=true";
    let mut url = format!("{}?{query}", app.collection_url());
    let mut pages = 0;

    loop {
        let page = json_body(app.get_url(&url).await).await;
        pages += 1;
        let ids = ids_of(&page);
        assert_eq!(page["@odata.count"], json!(walk.live.len()), "page {pages}");
        for id in &ids {
            let key = key_of
                .get(id)
                .unwrap_or_else(|| panic!("page {pages}: {id} does not match the filter"));
            if let Some(last) = walk.seen.last() {
                assert!(
                    key < &key_of[last],
                    "page {pages}: {key} after {}",
                    key_of[last]
                );
            }
            walk.returned(pages, id);
        }
        let Some(link) = page.get("@odata.nextLink") else {
            break;
        };
        let link = link.as_str().expect("a string").to_owned();
        assert_eq!(ids.len(), 37);
        assert_next_link(
            &app,
            &link,
            &[
                "$orderby=displayName%20desc",
                "$filter=startswith(displayName,%27Partner%201%27)",
                "$top=37",
                "$count=true",
            ],
        );
        assert!(pages < 20, "the walk ends");

        // Between pages: a match ahead of the cursor, one behind it, a non-match; an unseen
        // and a seen match deleted.
        let cursor = key_of[walk.seen.last().expect("seen")].clone();
        let names = [
            format!("Partner 100 ahead {pages}"),
            format!("Partner 1zz behind {pages}"),
            format!("Elsewhere {pages}"),
        ];
        let fresh = create_all(
            &app,
            names.iter().map(|n| json!({ "displayName": n })).collect(),
            3,
        )
        .await;
        for (name, entity) in names.iter().zip(fresh) {
            let id = entity["id"].as_str().expect("id").to_owned();
            if matches(name) {
                key_of.insert(id.clone(), name.to_lowercase());
                walk.live.insert(id.clone());
                if name.to_lowercase() < cursor {
                    ahead_added.insert(id);
                }
            }
        }
        let victim = walk
            .survivors
            .iter()
            .filter(|id| key_of[*id] < cursor)
            .max_by_key(|id| key_of[*id].clone())
            .cloned();
        if let Some(victim) = victim {
            walk.delete(&app, &victim).await;
        }
        let victim = walk
            .seen
            .iter()
            .find(|id| walk.live.contains(*id))
            .cloned()
            .expect("a seen match is alive");
        walk.delete(&app, &victim).await;
        url = link;
    }

    let skipped: Vec<_> = walk
        .unreturned(&walk.survivors)
        .into_iter()
        .map(|id| &key_of[id])
        .collect();
    assert!(
        skipped.is_empty(),
        "surviving matches never returned: {skipped:?}"
    );
    let ahead_missed: Vec<_> = walk
        .unreturned(&ahead_added)
        .into_iter()
        .map(|id| &key_of[id])
        .collect();
    assert!(
        ahead_missed.is_empty(),
        "matches created ahead of the cursor were skipped: {ahead_missed:?}"
    );
    assert!(pages >= 3, "{pages} pages");
}
