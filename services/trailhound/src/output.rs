//! Findings as JSON lines or a readable table, investigations, profiles,
//! and the summary on stderr.

use std::collections::BTreeMap;
use std::io::Write;

use trailhound_cloudtrail::time::format_ms;
use trailhound_detect::travel::label;
use trailhound_pipeline::ScanReport;
use trailhound_proto::Finding;
use trailhound_proto::indicator::Detail;
use trailhound_proto::{Investigation, Place, Profile};
use trailhound_query::investigation::BASELINE_DAYS;
use trailhound_state::StateError;

pub fn line(text: &str) -> std::io::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}")
}

/// `value` as pretty JSON on stdout, written as it is serialised.
pub fn json(value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// A line on stderr, beside the output.
pub fn note(text: &str) -> std::io::Result<()> {
    writeln!(std::io::stderr().lock(), "{text}")
}

/// An investigation as a readable report.
pub fn investigation(r: &Investigation, events_shown: usize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<13} {}",
        r.severity().label().to_uppercase(),
        r.summary
    )?;
    if !r.id.is_empty() {
        writeln!(out, "    id:       {}", r.id)?;
    }
    writeln!(
        out,
        "    baseline: {} event(s) in the {BASELINE_DAYS} days before the scope",
        r.baseline_events
    )?;
    for s in &r.sessions {
        let name = match (s.session_name.as_str(), s.access_key_ids.as_slice()) {
            ("", [key]) => key.clone(),
            ("", _) => "(no access key)".to_string(),
            (name, _) => format!("{name} ({} access key(s))", s.access_key_count),
        };
        let more = s.source_ip_count.saturating_sub(s.source_ips.len() as u64);
        let more = match more {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        writeln!(
            out,
            "    session:  {name}: {} → {}, {} event(s) from {}{more}",
            format_ms(s.first_ms),
            format_ms(s.last_ms),
            s.events,
            s.source_ips.join(", ")
        )?;
    }
    for detail in r.indicators.iter().filter_map(|i| i.detail.as_ref()) {
        writeln!(out, "    {}", describe(detail))?;
    }
    for e in r.events.iter().take(events_shown) {
        let failed = if e.error_code.is_empty() {
            ""
        } else {
            " failed: "
        };
        writeln!(
            out,
            "    event:    {} {} {} from {}{failed}{} ({})",
            format_ms(e.event_time_ms),
            e.event_id,
            e.api,
            e.source_ip,
            e.error_code,
            e.origin
        )?;
    }
    if r.events.len() > events_shown {
        let more = r.events.len() - events_shown;
        writeln!(
            out,
            "    … {more} more event(s) (--events, or --format json)"
        )?;
    }
    Ok(())
}

/// A profile as a readable report: its activity, then each dimension's
/// values with the most calls first.
pub fn profile(p: &Profile) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} ({})", p.principal, p.account_id)?;
    let window_days =
        (p.window_end_ms.saturating_sub(p.window_start_ms).max(0) as u64).div_ceil(86_400_000);
    writeln!(
        out,
        "    window:   {} → {} ({window_days} days)",
        format_ms(p.window_start_ms),
        format_ms(p.window_end_ms)
    )?;
    if p.events == 0 {
        writeln!(out, "    activity: no calls in the window")?;
        return Ok(());
    }
    writeln!(
        out,
        "    activity: {} call(s), {} failed, on {} day(s), {} → {}",
        p.events,
        p.failed_events,
        p.days.len(),
        format_ms(p.first_ms),
        format_ms(p.last_ms)
    )?;
    let mut hours: Vec<(usize, u64)> = p.events_by_hour.iter().copied().enumerate().collect();
    hours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let busiest: Vec<String> = (hours.iter().take(3))
        .filter(|(_, events)| *events > 0)
        .map(|(hour, events)| format!("{hour:02}h ({events})"))
        .collect();
    writeln!(out, "    hours:    busiest (UTC) {}", busiest.join(", "))?;
    for d in &p.dimensions {
        if d.distinct == 0 {
            continue;
        }
        writeln!(out, "    {} ({} distinct):", d.name, d.distinct)?;
        let width = d.values.iter().map(|v| v.value.len()).max().unwrap_or(0);
        for v in &d.values {
            let failed = match v.failed_events {
                0 => String::new(),
                n => format!(", {n} failed"),
            };
            writeln!(
                out,
                "        {:<width$}  {} call(s) on {} day(s), {} → {}{failed}",
                v.value,
                v.events,
                v.days,
                format_ms(v.first_ms),
                format_ms(v.last_ms)
            )?;
        }
        if d.distinct > d.values.len() as u64 {
            let more = d.distinct - d.values.len() as u64;
            writeln!(out, "        … {more} more (--values, or --format json)")?;
        }
    }
    Ok(())
}

fn describe(detail: &Detail) -> String {
    match detail {
        Detail::TtpObserved(t) => format!(
            "ttp:      {} {} {} from {}: {} succeeded, {} failed",
            t.tactic, t.technique, t.api, t.ip, t.successes, t.failures
        ),
        Detail::ImpossibleTravel(t) => {
            let end = |p: &Option<Place>| {
                let p = p.clone().unwrap_or_default();
                format!("{} ({}) at {}", label(&p), p.ip, format_ms(p.event_time_ms))
            };
            let hosting = if t.between_hosting_networks {
                " (both hosting or VPN networks)"
            } else {
                ""
            };
            format!(
                "travel:   {} → {}: {} km, {}{hosting}",
                end(&t.from),
                end(&t.to),
                t.km,
                t.speed
            )
        }
        Detail::FlaggedIpAddress(f) => {
            format!(
                "flagged:  {} ({}), {} event(s)",
                f.ip,
                f.flagged_by.join(", "),
                f.events
            )
        }
        Detail::NewGeolocation(g) => {
            let what = if g.new_country {
                "new country"
            } else {
                "new city"
            };
            let place = label(&Place {
                country: g.country.clone(),
                city: g.city.clone(),
                ..Default::default()
            });
            format!(
                "new geo:  {place} ({what}) from {}, {} event(s)",
                format_ms(g.first_ms),
                g.events
            )
        }
        Detail::NewAso(a) => format!(
            "new AS:   AS{} {} from {}, {} event(s)",
            a.asn,
            a.as_org,
            format_ms(a.first_ms),
            a.events
        ),
        Detail::NewUserAgent(u) => {
            let pentest = if u.pentest_distribution.is_empty() {
                String::new()
            } else {
                format!(" ({})", u.pentest_distribution)
            };
            format!(
                "new UA:   {}{pentest} from {}, {} event(s)",
                u.user_agent,
                format_ms(u.first_ms),
                u.events
            )
        }
        Detail::RelatedFinding(f) => format!(
            "finding:  {} {} {} ({})",
            f.severity().label(),
            f.detector,
            f.title,
            f.id
        ),
    }
}

pub fn json_lines(
    findings: impl Iterator<Item = Result<Finding, StateError>>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for f in findings {
        writeln!(out, "{}", trailhound_alert::render::native(&f?))?;
    }
    Ok(())
}

/// OCSF Detection Findings, one per line (activity Create: the finding as stored).
pub fn ocsf_lines(
    findings: impl Iterator<Item = Result<Finding, StateError>>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for f in findings {
        writeln!(out, "{}", trailhound_alert::render::ocsf(&f?, true))?;
    }
    Ok(())
}

pub fn table(findings: impl Iterator<Item = Result<Finding, StateError>>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut findings = findings.peekable();
    if findings.peek().is_none() {
        writeln!(out, "No findings.")?;
        return Ok(());
    }
    for f in findings {
        let f = &f?;
        writeln!(
            out,
            "{:<13} {}  {}",
            f.severity().label().to_uppercase(),
            f.detector,
            f.title
        )?;
        let span = if f.first_event_ms == f.last_event_ms {
            format_ms(f.first_event_ms)
        } else {
            format!(
                "{} → {}",
                format_ms(f.first_event_ms),
                format_ms(f.last_event_ms)
            )
        };
        if f.suppressed {
            writeln!(out, "    suppressed: {}", f.suppression_reason)?;
        }
        writeln!(
            out,
            "    who:      {} (account {})",
            f.principal, f.account_id
        )?;
        writeln!(
            out,
            "    when:     {span}, {} event(s), region {}",
            f.count, f.region
        )?;
        let from: Vec<&str> = [f.source_ip.as_str(), f.country.as_str(), f.as_org.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if !from.is_empty() {
            writeln!(out, "    from:     {}", from.join(", "))?;
        }
        for fact in &f.baseline_facts {
            writeln!(out, "    why:      {fact}")?;
        }
        if !f.attack.is_empty() {
            let attack: Vec<String> = f
                .attack
                .iter()
                .map(|a| format!("{} {}", a.tactic, a.technique))
                .collect();
            writeln!(out, "    att&ck:   {}", attack.join("; "))?;
        }
        let ids: Vec<&str> = f
            .evidence
            .iter()
            .map(|e| e.event_id.as_str())
            .take(5)
            .collect();
        writeln!(out, "    evidence: {}", ids.join(", "))?;
        if let Some(first) = f.guidance.as_ref().and_then(|g| g.what_to_check.first()) {
            writeln!(out, "    check:    {first}")?;
        }
        writeln!(out, "    id:       {}", f.id)?;
        writeln!(out)?;
    }
    Ok(())
}

/// The first `shown` of `total` things counted, a line each, then how many
/// more there were.
fn examples(
    err: &mut impl Write,
    label: &str,
    shown: &[impl std::fmt::Display],
    total: usize,
    more_hint: &str,
) -> std::io::Result<()> {
    for example in shown {
        writeln!(err, "{label}: {example}")?;
    }
    if total > shown.len() {
        writeln!(err, "{label}: … {} more{more_hint}", total - shown.len())?;
    }
    Ok(())
}

pub fn summary(r: &ScanReport) -> std::io::Result<()> {
    let mut err = std::io::stderr().lock();
    for w in &r.warnings {
        writeln!(err, "warning: {w}")?;
    }
    for e in &r.file_errors {
        writeln!(err, "error: {e}")?;
    }
    let (rejected, copies) = (r.events_rejected as usize, r.files_copies);
    let hint = " (see --dead-letter)";
    examples(&mut err, "rejected", &r.rejected_examples, rejected, hint)?;
    examples(&mut err, "copy, not read", &r.copy_examples, copies, "")?;
    if r.events_duplicate > 0 {
        writeln!(
            err,
            "note: {} event(s) came twice (the same eventID and time) and were counted once: \
             do two trails record the same calls (an organisation trail and an account's own, \
             or several logging global services)?",
            r.events_duplicate
        )?;
    }
    if r.events_late > 0 {
        writeln!(
            err,
            "note: {} event(s) came more than the reorder window behind their principal's \
             latest event (logs read out of time order, or a backfill into a state directory): \
             they were judged against profiles that already held later events, and left out \
             of the volume detectors once their time bucket had closed. For exact findings, \
             scan logs in time order.",
            r.events_late
        )?;
    }
    let mut by_detector: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let findings = r.findings.summaries();
    for f in findings {
        *by_detector
            .entry((f.detector.as_str(), f.severity.label()))
            .or_default() += 1;
    }
    let created = findings.iter().filter(|f| f.created).count();
    writeln!(
        err,
        "scanned {} file(s) ({} already scanned, {} copies, {} unreadable){}: {} events read, {} used, {} duplicates, {} rejected; {} principal(s)",
        r.files_read + r.files_skipped + r.files_copies,
        r.files_skipped,
        r.files_copies,
        r.file_errors.len(),
        match r.files_not_logs {
            0 => String::new(),
            n => format!(", and {n} not CloudTrail logs left out"),
        },
        r.events_read,
        r.events_used,
        r.events_duplicate,
        r.events_rejected,
        r.principals
    )?;
    writeln!(
        err,
        "findings: {} ({} new, {} updated, {} suppressed)",
        findings.len(),
        created,
        findings.len() - created,
        findings.iter().filter(|f| f.suppressed).count()
    )?;
    for ((detector, sev), n) in by_detector {
        writeln!(err, "  {detector} {sev}: {n}")?;
    }
    writeln!(
        err,
        "elapsed {:.2}s, {:.0} events/s",
        r.elapsed.as_secs_f64(),
        r.events_per_second()
    )
}

/// A progress bar of `{pos}/{len} {unit}` and a message.
pub fn progress_bar(unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{msg}} ({{elapsed}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
