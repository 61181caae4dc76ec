//! The one order of ranked lists: by certainty, highest first, then by
//! name-like ties, stable. Fetch and Introspect results, the Network merge
//! of them and the contextionary's nearest words all sort through
//! [`order`]: every sort the compiler instantiates costs the browser
//! modules' size budget (`wasm/build.sh`), so there is one.

use std::cmp::Ordering;

/// A list item's rank: its certainty and up to two ties, compared in turn.
pub type Rank<'a> = (f64, &'a str, &'a str);

/// The indices of `ranks`, in rank order: certainty descending (by
/// `total_cmp`, so NaN is never "equal" by accident), then each tie
/// ascending; equal ranks keep their order.
pub fn order(ranks: &[Rank<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ranks.len()).collect();
    order.sort_by(|&a, &b| compare(&ranks[a], &ranks[b]));
    order
}

fn compare(a: &Rank<'_>, b: &Rank<'_>) -> Ordering {
    b.0.total_cmp(&a.0)
        .then_with(|| a.1.cmp(b.1))
        .then_with(|| a.2.cmp(b.2))
}

/// `items` in `order` (from [`order`] over the same items).
pub fn arrange<T>(items: Vec<T>, order: &[usize]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// Sorts `items` by the rank `rank` gives each.
pub fn sort<T>(items: Vec<T>, rank: impl Fn(&T) -> Rank<'_>) -> Vec<T> {
    let order = order(&items.iter().map(&rank).collect::<Vec<_>>());
    arrange(items, &order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certainty_first_then_the_ties_and_equal_ranks_keep_their_order() {
        let items = [
            (0.5, "b", "x", 0),
            (0.9, "z", "x", 1),
            (0.5, "a", "y", 2),
            (0.5, "a", "x", 3),
            (0.5, "a", "x", 4),
            (1.0, "m", "", 5),
        ];
        let sorted = sort(items.to_vec(), |i| (i.0, i.1, i.2));
        let ids: Vec<_> = sorted.iter().map(|i| i.3).collect();
        assert_eq!(ids, [5, 1, 3, 4, 2, 0]);
    }
}
