//! The countries, AS organisations and user agents a principal is known
//! from at a time (its facts, which findings quote), kept with the span of
//! time over which they hold. Counting them means reading every value the
//! principal has: a leaked key used from thousands of networks would pay
//! that for every call. The span is narrowed as values change, and the
//! counts are made again only when a call falls outside it.
//!
//! A value is known at `t` when it was first seen before the reorder window
//! (`first_ms < t - reorder`) and is still in the window (`t - last_ms <=
//! window`): over the times `[first_ms + reorder + 1, last_ms + window + 1)`.

use crate::seen::{RepeatingValues, Seen};

#[derive(Debug, Clone, Default)]
pub struct KnownValues {
    /// The facts below hold at every time in `[from_ms, until_ms)`; empty
    /// (as by default) when they were never counted or no longer hold.
    from_ms: i64,
    until_ms: i64,
    /// In name order.
    pub countries: Vec<String>,
    pub asos: u32,
    pub user_agents: u32,
}

/// The times a value is known over, as a half-open span.
fn span(seen: &Seen, reorder_ms: i64, window_ms: i64) -> (i64, i64) {
    (seen.first_ms + reorder_ms + 1, seen.last_ms + window_ms + 1)
}

fn within((from, until): (i64, i64), t: i64) -> bool {
    from <= t && t < until
}

impl KnownValues {
    /// Whether the facts hold at `t`.
    pub fn hold_at(&self, t: i64) -> bool {
        within((self.from_ms, self.until_ms), t)
    }

    /// Count the values known at `t`, and the span around `t` over which
    /// none becomes known or stops being.
    pub fn count(
        [countries, asos, user_agents]: [&RepeatingValues; 3],
        t: i64,
        reorder_ms: i64,
        window_ms: i64,
        mut reuse: Vec<String>,
    ) -> Self {
        let (mut from_ms, mut until_ms) = (i64::MIN, i64::MAX);
        let mut known = |seen: &Seen| {
            let (start, end) = span(seen, reorder_ms, window_ms);
            for edge in [start, end] {
                if edge <= t {
                    from_ms = from_ms.max(edge);
                } else {
                    until_ms = until_ms.min(edge);
                }
            }
            within((start, end), t)
        };
        let mut n = 0;
        for (country, _) in countries.iter().filter(|(_, seen)| known(seen)) {
            match reuse.get_mut(n) {
                Some(reused) => country.clone_into(reused),
                None => reuse.push(country.to_string()),
            }
            n += 1;
        }
        reuse.truncate(n);
        reuse.sort_unstable();
        let asos = asos.iter().filter(|(_, seen)| known(seen)).count() as u32;
        let user_agents = user_agents.iter().filter(|(_, seen)| known(seen)).count() as u32;
        Self {
            from_ms,
            until_ms,
            countries: reuse,
            asos,
            user_agents,
        }
    }

    /// A value went from `before` (`None`: new) to `after`: the facts now
    /// hold only up to the first time the value's standing differs.
    pub fn changed(
        &mut self,
        before: Option<&Seen>,
        after: &Seen,
        reorder_ms: i64,
        window_ms: i64,
    ) {
        let before = before.map_or((0, 0), |seen| span(seen, reorder_ms, window_ms));
        let after = span(after, reorder_ms, window_ms);
        // Where two spans differ, that begins at the first time or at an edge.
        let first_difference = [self.from_ms, before.0, before.1, after.0, after.1]
            .into_iter()
            .filter(|&t| self.hold_at(t) && within(before, t) != within(after, t))
            .min();
        if let Some(t) = first_difference {
            self.until_ms = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::seen::Values;

    const REORDER: i64 = 900;
    const WINDOW: i64 = 20_000;

    fn recounted(maps: &[RepeatingValues; 3], t: i64) -> KnownValues {
        KnownValues::count(
            [&maps[0], &maps[1], &maps[2]],
            t,
            REORDER,
            WINDOW,
            Vec::new(),
        )
    }

    /// Calls arriving out of order, with gaps past the window and values
    /// pruned: the kept facts are always those counted afresh.
    #[test]
    fn kept_facts_are_the_counted_ones_whatever_the_calls() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let mut maps: [RepeatingValues; 3] = Default::default();
        let mut kept = KnownValues::default();
        let (mut clock, mut recounts) = (0i64, 0);
        for call in 0..20_000 {
            // Mostly forward, sometimes back within the reorder window,
            // sometimes a long quiet spell.
            clock += match rng.random_range(0..100) {
                0 => 30_000,
                1..=10 => -rng.random_range(0..REORDER),
                _ => rng.random_range(0..200),
            };
            let t = clock;
            if !kept.hold_at(t) {
                kept = recounted(&maps, t);
                recounts += 1;
            }
            let fresh = recounted(&maps, t);
            assert_eq!(
                (&kept.countries, kept.asos, kept.user_agents),
                (&fresh.countries, fresh.asos, fresh.user_agents),
                "call {call} at {t}"
            );
            for map in &mut maps {
                let value = format!("v{}", rng.random_range(0..40));
                let (_, before, after) = map.record_change(&value, t, WINDOW, 1);
                kept.changed(before.as_ref(), &after, REORDER, WINDOW);
            }
            // As the profile hop prunes, once a day.
            if call % 1_000 == 0 {
                for map in &mut maps {
                    map.retain_live(t, WINDOW);
                }
                kept = KnownValues::default();
            }
        }
        assert!(recounts < 20_000 / 2, "{recounts} recounts");
    }
}
