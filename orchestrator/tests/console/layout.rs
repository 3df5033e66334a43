//! At phone width (375×800): no page scrolls sideways, every form control is labelled, the
//! overview's boxes stay where they are while it refreshes, and Tab walks visible controls.

use serde_json::{Value, json};

use crate::browser::{Browser, turn};
use crate::helpers::{order_body, spawn_console_fleet};

const PHONE: (u32, u32) = (375, 800);

/// Offenders on the current page: sideways scrolling, unlabelled controls.
const CHECK: &str = "
    const root = document.documentElement;
    const wide = root.scrollWidth > window.innerWidth
        ? [`scrollWidth ${root.scrollWidth} > innerWidth ${window.innerWidth}`] : [];
    const unlabelled = [...document.querySelectorAll('input, select, textarea')]
        .filter(el => el.type !== 'hidden')
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
            && !el.getAttribute('aria-labelledby'))
        .map(el => el.outerHTML.slice(0, 120));
    return {wide, unlabelled};";

/// Where each overview box is on the page, and the same at every `data-state` change after.
const WATCH: &str = "
    const ids = ['overview-chart', 'overview-duration', 'overview-in-flight', 'overview-overdue',
        'overview-rejected', 'overview-services', 'overview-today'];
    const boxes = () => ids.map(id => {
        const r = document.getElementById(id).getBoundingClientRect();
        return [id, Math.round(r.left + scrollX), Math.round(r.top + scrollY),
            Math.round(r.width), Math.round(r.height)];
    });
    window.__boxes = {first: boxes(), later: []};
    new MutationObserver(() => window.__boxes.later.push(boxes()))
        .observe(document.getElementById('page'), {attributes: true, attributeFilter: ['data-state']});
    return window.__boxes.first;";

#[tokio::test]
async fn at_phone_width_pages_fit_controls_are_labelled_and_the_overview_holds_still() {
    let _turn = turn().await;
    let fleet = spawn_console_fleet().await;
    fleet.set_balance("phone-di", 10_000).await;
    fleet.set_stock("phone-lamp", 10).await;
    let order_id = fleet
        .place(&order_body("phone-di", "phone-lamp", 1, 100))
        .await;
    fleet.wait_final(order_id).await;
    let browser = Browser::start().await;
    browser.resize(PHONE).await;
    let width = browser.js("return window.innerWidth", vec![]).await;
    assert_eq!(width, 375, "the viewport's width");
    browser.sign_in(&fleet.orchestrator.base).await;

    let base = &fleet.orchestrator.base;
    for (route, page) in [
        ("#/overview", "overview"),
        ("#/sagas", "sagas"),
        (&*format!("#/sagas/{order_id}"), "saga"),
        ("#/dead-letters", "dead-letters"),
        ("#/bulk", "bulk"),
        ("#/notifications", "notifications"),
    ] {
        browser.goto(&format!("{base}/console{route}")).await;
        browser.wait_page(page).await;
        let found = browser.js(CHECK, vec![]).await;
        assert_eq!(found["wide"], json!([]), "{page} scrolls sideways");
        assert_eq!(
            found["unlabelled"],
            json!([]),
            "{page}: controls without a label"
        );
    }

    // The overview refreshes itself (every 5 s): its boxes stay put.
    browser.goto(&format!("{base}/console#/overview")).await;
    browser.wait_page("overview").await;
    let first = browser.js(WATCH, vec![]).await;
    let later =
        saga_common::testing::eventually("an overview refresh", PATIENCE_REFRESH, || async {
            let later = browser.js("return window.__boxes.later", vec![]).await;
            let seen = later.as_array().is_some_and(|l| !l.is_empty());
            seen.then_some(later)
        })
        .await;
    for boxes in later.as_array().unwrap() {
        assert_eq!(boxes, &first, "a box moved while the overview refreshed");
    }

    // Tab from the first link of the page onwards reaches visible controls, one after another.
    browser
        .js("document.querySelector('nav#nav a').focus()", vec![])
        .await;
    let mut visited = Vec::new();
    for _ in 0..8 {
        browser.tab().await;
        let focused = browser
            .js(
                "const el = document.activeElement;
                 if (!el || el === document.body) return null;
                 const r = el.getBoundingClientRect(), style = getComputedStyle(el);
                 return {tag: el.tagName, id: el.id, text: el.textContent.trim().slice(0, 40),
                     visible: r.width > 0 && r.height > 0 && style.visibility !== 'hidden'};",
                vec![],
            )
            .await;
        assert_ne!(focused, Value::Null, "Tab left the focus nowhere");
        assert_eq!(
            focused["visible"], true,
            "focus on a hidden control: {focused}"
        );
        visited.push(focused);
    }
    visited.dedup();
    assert!(
        visited.len() >= 4,
        "Tab does not move through controls: {visited:?}"
    );
}

/// Two refresh periods of the overview.
const PATIENCE_REFRESH: std::time::Duration = std::time::Duration::from_secs(15);
