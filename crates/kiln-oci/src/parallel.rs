//! An ordered parallel map: the one way kiln spreads independent work (layers to decode,
//! files to hash) over a few threads while keeping results in input order, so output never
//! depends on which thread finished first.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `f` on every item on up to `jobs` scoped threads (at least one) and returns the
/// results in item order. Items are handed out one at a time, so a slow item does not hold
/// up a whole batch. After an error no new item is started, and the error of the
/// lowest-numbered failing item is returned (the same one a sequential loop would stop at
/// whenever the items before it succeed).
pub fn try_map_ordered<T, R, E, F>(items: &[T], jobs: usize, f: F) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
    F: Fn(usize, &T) -> Result<R, E> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<R, E>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let workers = jobs.max(1).min(items.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    let r = f(i, &items[i]);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => return Err(e),
            // Not started because an item failed; that item's error comes later in order.
            None => continue,
        }
    }
    Ok(out)
}

/// [`try_map_ordered`] for work that cannot fail.
pub fn map_ordered<T, R, F>(items: &[T], jobs: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &T) -> R + Sync,
{
    match try_map_ordered(items, jobs, |i, t| Ok::<R, std::convert::Infallible>(f(i, t))) {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_input_order() {
        let items: Vec<u64> = (0..100).collect();
        let out = map_ordered(&items, 4, |i, x| {
            // Uneven work so threads finish out of order.
            std::thread::sleep(std::time::Duration::from_micros((100 - *x) * 10));
            (i, x * 2)
        });
        assert_eq!(out, items.iter().map(|x| (*x as usize, x * 2)).collect::<Vec<_>>());
        assert!(map_ordered(&[] as &[u8], 4, |_, x| *x).is_empty());
    }

    #[test]
    fn the_first_failing_item_is_reported() {
        let items: Vec<u32> = (0..50).collect();
        let r = try_map_ordered(&items, 3, |_, x| if *x == 7 || *x == 30 { Err(*x) } else { Ok(*x) });
        assert_eq!(r, Err(7));
        let ok = try_map_ordered(&items, 1, |_, x| Ok::<_, ()>(*x + 1)).unwrap();
        assert_eq!(ok.len(), 50);
    }
}
