//! [`SharedSlice`]: a view of a reference-counted buffer, so that the objects of a batch of frames can own their
//! points without each copying them out of the batch's buffer.

use std::fmt;
use std::ops::{Deref, Range};
use std::panic::RefUnwindSafe;
use std::sync::Arc;

/// A range of a shared buffer, read as a slice. Cloning and slicing share the buffer (no copy); it is freed with its
/// last view, so a small view keeps the whole buffer alive (`to_vec` copies what it shows out). Built from a `Vec`
/// without a copy, or from a buffer another keeper holds ([`SharedSlice::kept`]). Compares and prints as the slice it
/// shows.
pub struct SharedSlice<T> {
    buffer: Buffer<T>,
    range: Range<usize>,
}

/// What a [`SharedSlice`] reads.
enum Buffer<T> {
    Vec(Arc<Vec<T>>),
    /// Values another keeper holds (on CUDA, page-locked memory the device copied a batch's grouped points into,
    /// which goes back to the backend's pool when its last view goes).
    Kept(Arc<dyn AsRef<[T]> + Send + Sync + RefUnwindSafe>),
}

impl<T> Buffer<T> {
    fn all(&self) -> &[T] {
        match self {
            Buffer::Vec(v) => v,
            Buffer::Kept(k) => (**k).as_ref(),
        }
    }
}

impl<T> Clone for Buffer<T> {
    fn clone(&self) -> Self {
        match self {
            Buffer::Vec(v) => Buffer::Vec(Arc::clone(v)),
            Buffer::Kept(k) => Buffer::Kept(Arc::clone(k)),
        }
    }
}

impl<T> SharedSlice<T> {
    /// A view of all of `keeper`'s values, without a copy: the keeper goes with the last view. Its `as_ref` must give
    /// the same values for as long as it lives (it is read at every access; a keeper whose slice shrinks makes the
    /// views' accesses panic).
    pub fn kept(keeper: Arc<dyn AsRef<[T]> + Send + Sync + RefUnwindSafe>) -> Self {
        let range = 0..(*keeper).as_ref().len();
        SharedSlice { buffer: Buffer::Kept(keeper), range }
    }

    /// The part `range` of this view (indices relative to it), sharing the buffer; `None` past its end.
    pub fn slice(&self, range: Range<usize>) -> Option<Self> {
        if range.start > range.end || range.end > self.len() {
            return None;
        }
        let start = self.range.start + range.start;
        Some(SharedSlice { buffer: self.buffer.clone(), range: start..start + range.len() })
    }

    /// The values as a `Vec`: the buffer itself when this is the only view of a `Vec` and covers all of it, else a
    /// copy.
    pub fn into_vec(self) -> Vec<T>
    where
        T: Clone,
    {
        match self.buffer {
            Buffer::Vec(buffer) if self.range.start == 0 && self.range.end == buffer.len() => {
                Arc::try_unwrap(buffer).unwrap_or_else(|b| b.to_vec())
            }
            buffer => buffer.all()[self.range].to_vec(),
        }
    }
}

impl<T> Deref for SharedSlice<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // The range lies within the buffer: `From` and `kept` cover all of it and `slice` checks.
        &self.buffer.all()[self.range.clone()]
    }
}

impl<T> AsRef<[T]> for SharedSlice<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T> From<Vec<T>> for SharedSlice<T> {
    fn from(v: Vec<T>) -> Self {
        let range = 0..v.len();
        SharedSlice { buffer: Buffer::Vec(Arc::new(v)), range }
    }
}

impl<T> FromIterator<T> for SharedSlice<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Vec::from_iter(iter).into()
    }
}

impl<T> Default for SharedSlice<T> {
    fn default() -> Self {
        Vec::new().into()
    }
}

impl<T> Clone for SharedSlice<T> {
    fn clone(&self) -> Self {
        SharedSlice { buffer: self.buffer.clone(), range: self.range.clone() }
    }
}

impl<T: fmt::Debug> fmt::Debug for SharedSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: PartialEq> PartialEq for SharedSlice<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for SharedSlice<T> {}

impl<T: PartialEq> PartialEq<Vec<T>> for SharedSlice<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        **self == other[..]
    }
}

impl<T: PartialEq> PartialEq<SharedSlice<T>> for Vec<T> {
    fn eq(&self, other: &SharedSlice<T>) -> bool {
        self[..] == **other
    }
}

impl<T: PartialEq> PartialEq<[T]> for SharedSlice<T> {
    fn eq(&self, other: &[T]) -> bool {
        **self == *other
    }
}

impl<'a, T> IntoIterator for &'a SharedSlice<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_share_the_buffer_and_read_their_range() {
        let all: SharedSlice<u32> = (0..10).collect();
        assert_eq!(all.len(), 10);
        let mid = all.slice(2..7).expect("within");
        assert_eq!(&*mid, &[2, 3, 4, 5, 6]);
        // A view of a view counts from its own start.
        let inner = mid.slice(1..3).expect("within");
        assert_eq!(inner, vec![3, 4]);
        assert_eq!(vec![3, 4], inner);
        assert_eq!(inner, [3, 4][..]);
        assert_ne!(inner, mid);
        assert!(std::ptr::eq(&inner[0], &all[3]), "no copy");
        assert_eq!(mid.slice(0..0).expect("empty").len(), 0);
        assert_eq!(mid.slice(5..5).expect("empty at the end").len(), 0);
        assert!(mid.slice(4..6).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = mid.slice(3..2);
        assert!(backwards.is_none());
        assert_eq!(format!("{inner:?}"), "[3, 4]");
        // into_vec: a copy of a part, the buffer itself when a lone view covers it.
        assert_eq!(inner.into_vec(), vec![3, 4]);
        drop(mid);
        let ptr = all.as_ptr();
        let v = all.into_vec();
        assert_eq!(v, (0..10).collect::<Vec<_>>());
        assert_eq!(v.as_ptr(), ptr, "the lone whole view gives its buffer back");
        assert!(SharedSlice::<u8>::default().is_empty());
    }

    #[test]
    fn views_of_a_kept_buffer_share_it_and_free_it_with_the_last() {
        // The values and a count of the keepers alive (a clone of `alive` each).
        struct Keeper {
            values: Vec<u32>,
            _alive: Arc<()>,
        }
        impl AsRef<[u32]> for Keeper {
            fn as_ref(&self) -> &[u32] {
                &self.values
            }
        }
        let alive = Arc::new(());
        let all = SharedSlice::kept(Arc::new(Keeper { values: (0..10).collect(), _alive: Arc::clone(&alive) }));
        assert_eq!(all.len(), 10);
        let mid = all.slice(2..7).expect("within");
        assert_eq!(mid, vec![2, 3, 4, 5, 6]);
        assert!(std::ptr::eq(&mid[1], &all[3]), "no copy");
        assert!(all.slice(4..11).is_none());
        assert_eq!(format!("{:?}", mid.slice(1..3).expect("within")), "[3, 4]");
        // into_vec copies (the keeper is not a Vec to give back); the keeper goes with the last view.
        drop(all);
        assert_eq!(Arc::strong_count(&alive), 2, "a view keeps the keeper");
        assert_eq!(mid.clone().into_vec(), vec![2, 3, 4, 5, 6]);
        drop(mid);
        assert_eq!(Arc::strong_count(&alive), 1, "the last view frees the keeper");
    }
}
