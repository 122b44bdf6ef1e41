//! An ordered map over a stream with several items in flight: what lets the host steps of one batch of frames run
//! while a GPU backend works on the next one (see [`crate::backend::Backend::batches_in_flight`]).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Applies `f` to every item of `input` on `workers` threads (at least 1), up to `workers` items at once, and hands
/// the results to `sink` in input order. Item k goes to worker k mod `workers` and the results are collected in the
/// same rotation, so no result waits in a buffer for an earlier one beyond its own worker's hand-over. Stops early,
/// dropping the rest of the input, when `sink` returns `false`. Returns `false` when `f` panicked on some item (the
/// items after the first such item are not handed to `sink`).
pub fn ordered_map<I: Send, O: Send>(
    input: impl IntoIterator<Item = I> + Send,
    workers: usize,
    f: impl Fn(I) -> O + Sync,
    mut sink: impl FnMut(O) -> bool,
) -> bool {
    let workers = workers.max(1);
    let f = &f;
    std::thread::scope(|s| {
        let (to_workers, from_dispatch): (Vec<SyncSender<I>>, Vec<Receiver<I>>) =
            (0..workers).map(|_| sync_channel::<I>(0)).unzip();
        let (to_sink, from_workers): (Vec<SyncSender<O>>, Vec<Receiver<O>>) =
            (0..workers).map(|_| sync_channel::<O>(0)).unzip();
        let dispatcher = s.spawn(move || {
            for (item, k) in input.into_iter().zip((0..workers).cycle()) {
                if to_workers[k].send(item).is_err() {
                    break;
                }
            }
        });
        let handles: Vec<_> = from_dispatch
            .into_iter()
            .zip(to_sink)
            .map(|(items, results)| {
                s.spawn(move || {
                    for item in items {
                        if results.send(f(item)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        // A worker with no next item (the input ended, or the worker stopped) closes its channel: the rotation ends
        // there, after every earlier result.
        for k in (0..workers).cycle() {
            let Ok(out) = from_workers[k].recv() else { break };
            if !sink(out) {
                break;
            }
        }
        drop(from_workers);
        // Every thread joined, whatever the first one says.
        let joined: Vec<bool> = handles.into_iter().map(|h| h.join().is_ok()).collect();
        dispatcher.join().is_ok() && joined.iter().all(|&ok| ok)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_come_in_input_order_whatever_the_workers_and_their_speed() {
        for workers in [0, 1, 2, 3, 8] {
            let mut got = Vec::new();
            // Uneven work: later items often finish first.
            let ok = ordered_map(
                0..40u64,
                workers,
                |i| {
                    std::thread::sleep(Duration::from_micros(
                        (crate::geometry::rng::draw_u32(i as u32, 0, 0, 0) % 400) as u64,
                    ));
                    i * i
                },
                |o| {
                    got.push(o);
                    true
                },
            );
            assert!(ok);
            assert_eq!(got, (0..40u64).map(|i| i * i).collect::<Vec<_>>(), "{workers} workers");
        }
        // An empty input ends at once.
        assert!(ordered_map(std::iter::empty::<u32>(), 2, |i| i, |_| panic!("no items")));
    }

    #[test]
    fn a_sink_that_stops_stops_the_map_and_a_panic_is_reported() {
        let mut got = Vec::new();
        let ok = ordered_map(
            0..1000u32,
            3,
            |i| i,
            |o| {
                got.push(o);
                o < 9
            },
        );
        assert!(ok);
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        let mut got = Vec::new();
        let ok = ordered_map(
            0..20u32,
            2,
            |i| {
                assert!(i != 7, "item 7");
                i
            },
            |o| {
                got.push(o);
                true
            },
        );
        assert!(!ok);
        assert_eq!(got, (0..7).collect::<Vec<_>>(), "results up to the panicking item, in order");
    }
}
