//! A byte buffer that lives on the stack until it outgrows it.
//!
//! Sealing builds the cookie's bytes (header, payload, tag) and then its base64 text, and
//! both are dropped as soon as the `Set-Cookie` header holds the text: on the heap they
//! were two allocations on every response that sets a sealed cookie.

use std::io;

/// Up to `N` bytes on the stack; past that, everything moves to one `Vec`.
pub(super) struct Scratch<const N: usize> {
    inline: [u8; N],
    len: usize,
    /// Once spilled, the whole contents (and `inline`/`len` are unused).
    heap: Option<Vec<u8>>,
}

impl<const N: usize> Scratch<N> {
    pub(super) fn new() -> Self {
        Self {
            inline: [0; N],
            len: 0,
            heap: None,
        }
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.heap.as_ref().map_or(self.len, Vec::len)
    }

    #[inline]
    pub(super) fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        match self.inline.get_mut(self.len..end) {
            Some(room) if self.heap.is_none() => {
                room.copy_from_slice(bytes);
                self.len = end;
            }
            _ => self.extend_spilled(bytes),
        }
    }

    /// [`extend_from_slice`](Self::extend_from_slice) past the inline room: kept out of
    /// line, so that the common small write inlines into the serializer.
    #[cold]
    #[inline(never)]
    fn extend_spilled(&mut self, bytes: &[u8]) {
        let heap = self.spill(bytes.len());
        heap.extend_from_slice(bytes);
    }

    /// The heap buffer, created (with the inline contents) if need be, with room for
    /// `additional` more bytes.
    fn spill(&mut self, additional: usize) -> &mut Vec<u8> {
        let len = self.len;
        let inline = &self.inline;
        let heap = self.heap.get_or_insert_with(|| {
            let mut heap = Vec::with_capacity((len + additional).max(2 * N));
            heap.extend_from_slice(&inline[..len]);
            heap
        });
        heap.reserve(additional);
        heap
    }

    /// Appends `len` zero bytes and returns them, to be written in place.
    pub(super) fn extend_zeroed(&mut self, len: usize) -> &mut [u8] {
        let start = self.len();
        if self.heap.is_none() && start + len <= N {
            self.len = start + len;
            let room = &mut self.inline[start..start + len];
            room.fill(0);
            return room;
        }
        let heap = self.spill(len);
        heap.resize(start + len, 0);
        &mut heap[start..]
    }

    pub(super) fn truncate(&mut self, len: usize) {
        match &mut self.heap {
            Some(heap) => heap.truncate(len),
            None => self.len = self.len.min(len),
        }
    }
}

impl<const N: usize> std::ops::Deref for Scratch<N> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.heap {
            Some(heap) => heap,
            None => &self.inline[..self.len],
        }
    }
}

impl<const N: usize> std::ops::DerefMut for Scratch<N> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.heap {
            Some(heap) => heap,
            None => &mut self.inline[..self.len],
        }
    }
}

impl<const N: usize> io::Write for Scratch<N> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_to_the_heap_with_its_contents() {
        let mut scratch = Scratch::<4>::new();
        scratch.extend_from_slice(b"abc");
        assert_eq!(&*scratch, b"abc");
        scratch.extend_from_slice(b"de");
        assert_eq!(&*scratch, b"abcde");
        scratch.extend_zeroed(2)[1] = b'z';
        assert_eq!(&*scratch, b"abcde\0z");
        scratch.truncate(2);
        assert_eq!(&*scratch, b"ab");
        assert_eq!(scratch.len(), 2);
    }

    #[test]
    fn stays_inline_up_to_its_size() {
        let mut scratch = Scratch::<4>::new();
        scratch.extend_zeroed(3).copy_from_slice(b"xyz");
        scratch.extend_from_slice(b"w");
        assert!(scratch.heap.is_none());
        assert_eq!(&*scratch, b"xyzw");
        scratch.truncate(1);
        scratch.extend_from_slice(b"q");
        assert_eq!(&*scratch, b"xq");
    }
}
