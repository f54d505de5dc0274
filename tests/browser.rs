//! The demo's audit viewer in a real browser (headless Chromium): an administrator logs in
//! through the form and investigates: a role change arriving live with its diff, the actor
//! filter, a target's history as of a time, a brute-force alert; a hostile username stays
//! text; no page loads anything from elsewhere. Screenshots go to
//! `target/tmp/screenshots/`.

mod common;

use common::browser::{Browser, Chromium};
use common::demo::{Demo, login, read_trail, send};
use fantoccini::Locator;
use fantoccini::key::Key;

/// Logs alice in through the demo's HTML form, as a person would: the session cookie it sets
/// is what the viewer's pages are asked with.
async fn log_in_through_the_form(browser: &Browser) {
    browser.open("/login").await;
    let form = browser.wait_for("form#login").await;
    for (name, value) in [("username", "alice"), ("password", "alice-password")] {
        form.find(Locator::Css(&format!("input[name={name}]")))
            .await
            .expect("login field")
            .send_keys(value)
            .await
            .expect("type");
    }
    form.find(Locator::Css("button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    browser
        .client
        .wait()
        .at_most(common::browser::PATIENCE)
        .for_element(Locator::XPath(
            "//p[@id='result' and contains(., 'Logged in')]",
        ))
        .await
        .expect("the form says the user is logged in");
}

/// Every URL the page used or links to is the demo's own.
async fn assert_nothing_external(browser: &Browser) {
    let own = browser.url("/");
    let urls = browser.urls().await;
    assert!(urls.len() > 1, "{urls:?}");
    let external: Vec<_> = urls.iter().filter(|url| !url.starts_with(&own)).collect();
    assert!(external.is_empty(), "external resources: {external:?}");
}

/// What a screen reader relies on: a language, headings, a label for every field, a
/// caption and column headers for every table, a live region for live rows, and named
/// navigation.
async fn assert_accessible(browser: &Browser) {
    let problems = browser
        .eval(
            "const problems = [];
             if (!document.documentElement.lang) { problems.push('no lang'); }
             if (!document.querySelector('h1') || !document.querySelector('main h2')) {
               problems.push('no headings');
             }
             for (const input of document.querySelectorAll('input, select, textarea')) {
               if (input.labels.length === 0) { problems.push('unlabelled ' + input.name); }
             }
             for (const table of document.querySelectorAll('table')) {
               if (!table.caption) { problems.push('a table without a caption'); }
               for (const th of table.querySelectorAll('thead th')) {
                 if (th.scope !== 'col') { problems.push('a header without scope'); }
               }
             }
             if (!document.querySelector('[aria-live]')) { problems.push('no live region'); }
             for (const nav of document.querySelectorAll('nav')) {
               if (!nav.getAttribute('aria-label')) { problems.push('an unnamed nav'); }
             }
             return problems;",
        )
        .await;
    assert_eq!(problems, serde_json::json!([]), "{problems}");
}

/// The actor cells of the events table.
async fn actor_cells(browser: &Browser) -> Vec<String> {
    let cells = browser
        .eval(
            "return Array.from(document.querySelectorAll('tbody tr td:nth-child(2)'), \
             (cell) => cell.innerText);",
        )
        .await;
    serde_json::from_value(cells).expect("texts")
}

#[tokio::test]
async fn an_administrator_investigates_in_the_browser() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path(), &[]);
    let browser = chromium.start(demo.addr).await;
    log_in_through_the_form(&browser).await;

    // The events page, open while a role changes through the API: the change arrives live,
    // with its diff, at the top of the table.
    browser.open("/admin/audit").await;
    browser.wait_for("table[data-live] tbody").await;
    assert_nothing_external(&browser).await;
    assert_accessible(&browser).await;
    let admin = login(demo.addr, "alice", "alice-password").await;
    for role in ["editor", "admin"] {
        let (status, body) = send(
            demo.addr,
            "PUT",
            "/admin/users/2/role",
            &[&admin],
            &format!(r#"{{"role":"{role}"}}"#),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let live_row = browser
        .client
        .wait()
        .at_most(common::browser::PATIENCE)
        .for_element(Locator::XPath(
            "//tbody/tr[td[.='user.role.change'] and td[contains(., 'role: editor → admin')]]",
        ))
        .await
        .expect("the role change appears live, with its diff");
    let status = browser.wait_for("#live-status").await;
    assert!(
        status.text().await.expect("text").contains("Live"),
        "the live region announces new rows"
    );
    assert!(
        browser.text().await.contains("role: viewer → editor"),
        "both changes arrived"
    );
    browser.screenshot("viewer-live").await;

    // The event in full: the change field by field, the changed value highlighted.
    live_row
        .find(Locator::Css("td:first-child a"))
        .await
        .expect("the event's link")
        .click()
        .await
        .expect("open the event");
    let changed = browser.wait_for("tr.changed").await;
    assert_eq!(
        changed
            .text()
            .await
            .expect("text")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["role", "editor", "admin"]
    );
    assert_nothing_external(&browser).await;
    browser.screenshot("viewer-event").await;

    // Filter by actor with the keyboard: type into the form, Tab moves to the next field,
    // Enter submits. Every row is then alice's.
    browser.open("/admin/audit").await;
    let actor = browser.wait_for("#f-actor").await;
    actor.send_keys("alice").await.expect("type");
    actor.send_keys(&Key::Tab.to_string()).await.expect("tab");
    let focused = browser.client.active_element().await.expect("focus");
    assert_eq!(
        focused.attr("id").await.expect("id").as_deref(),
        Some("f-action"),
        "Tab moves from one filter to the next"
    );
    focused
        .send_keys(&Key::Enter.to_string())
        .await
        .expect("enter");
    let deadline = std::time::Instant::now() + common::browser::PATIENCE;
    while !browser
        .client
        .current_url()
        .await
        .expect("url")
        .as_str()
        .contains("?actor=alice&")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the filter is in the URL, to share"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    browser.wait_for("tbody tr").await;
    let actors = actor_cells(&browser).await;
    assert!(!actors.is_empty());
    assert!(
        actors.iter().all(|actor| actor == "1 (alice)"),
        "{actors:?}"
    );

    // A target's history: who touched user:2, and its state as of the first change.
    browser
        .client
        .find(Locator::XPath("//tbody//a[.='user:2']"))
        .await
        .expect("a link to the target")
        .click()
        .await
        .expect("open the history");
    let state = browser.wait_for("section pre").await;
    assert!(
        state
            .text()
            .await
            .expect("text")
            .contains("\"role\": \"admin\""),
        "the state now"
    );
    let first_change = read_trail(dir.path())
        .into_iter()
        .find(|event| event["action"] == "user.role.change")
        .expect("the first role change");
    let at = browser.wait_for("#at").await;
    at.send_keys(first_change["time"].as_str().expect("time"))
        .await
        .expect("type");
    at.send_keys(&Key::Enter.to_string()).await.expect("enter");
    browser
        .client
        .wait()
        .at_most(common::browser::PATIENCE)
        .for_element(Locator::XPath("//h2[starts-with(., 'State as of')]"))
        .await
        .expect("the state as of a time");
    let then = browser
        .wait_for("section pre")
        .await
        .text()
        .await
        .expect("text");
    assert!(then.contains("\"role\": \"editor\""), "{then}");
    assert!(!then.contains("admin"), "{then}");
    assert_nothing_external(&browser).await;
    browser.screenshot("viewer-history").await;

    // Failed logins for one user: a brute-force alert on the alerts page.
    for _ in 0..5 {
        let (status, _) = send(
            demo.addr,
            "POST",
            "/login",
            &[],
            r#"{"username":"carol","password":"guess"}"#,
        )
        .await;
        assert_eq!(status, 401);
    }
    let deadline = std::time::Instant::now() + common::browser::PATIENCE;
    loop {
        browser.open("/admin/audit/alerts").await;
        browser.wait_for("table").await;
        if browser.text().await.contains("security.bruteforce") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no brute-force alert: {}",
            browser.text().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(browser.text().await.contains("security.privilege.grant"));
    assert_nothing_external(&browser).await;
    browser.screenshot("viewer-alerts").await;

    browser.close().await;
}

#[tokio::test]
async fn a_hostile_username_shows_as_text_and_nothing_loads_from_elsewhere() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path(), &[]);
    let browser = chromium.start(demo.addr).await;
    // A username that would run a script, load an image from elsewhere and reverse the text
    // around it, were it markup.
    let hostile =
        "<script>document.title='pwned'</script><img src=\"http://192.0.2.1/x.png\">\u{202e}exe";
    let body = serde_json::json!({"username": hostile, "password": "x"}).to_string();
    let (status, _) = send(demo.addr, "POST", "/login", &[], &body).await;
    assert_eq!(status, 401);

    log_in_through_the_form(&browser).await;
    browser
        .open("/admin/audit?action=auth.login&outcome=failure")
        .await;
    browser
        .wait_for("tbody tr td:first-child a")
        .await
        .click()
        .await
        .expect("open the failed login");
    browser.wait_for("dl").await;
    let text = browser.text().await;
    assert!(
        // As JSON in the details: its quotes escaped.
        text.contains(
            r#""username": "<script>document.title='pwned'</script><img src=\"http://192.0.2.1/x.png\">"#
        ),
        "the username is shown as text: {text}"
    );
    assert!(
        text.contains("\\u{202e}exe"),
        "the bidi override is shown, not obeyed"
    );
    let title = browser.eval("return document.title;").await;
    assert!(
        title
            .as_str()
            .is_some_and(|title| title.starts_with("Audit event")),
        "{title}"
    );
    let counts = browser
        .eval(
            "return [document.scripts.length, document.images.length, \
             Array.from(document.scripts, (s) => s.src)];",
        )
        .await;
    assert_eq!(counts[0], 1, "only the viewer's own script: {counts}");
    assert_eq!(counts[1], 0, "no image: {counts}");
    assert_nothing_external(&browser).await;
    browser.screenshot("viewer-hostile").await;
    browser.close().await;
}
