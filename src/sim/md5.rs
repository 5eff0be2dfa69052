//! MD5 (RFC 1321), for the `etag` of D1's import protocol. Not for security.

/// Incremental MD5 hasher.
pub(crate) struct Md5 {
    state: [u32; 4],
    pending: Vec<u8>,
    length: u64,
    constants: [u32; 64],
}

const SHIFTS: [[u32; 4]; 4] = [[7, 12, 17, 22], [5, 9, 14, 20], [4, 11, 16, 23], [6, 10, 15, 21]];

impl Md5 {
    pub(crate) fn new() -> Self {
        let mut constants = [0u32; 64];
        for (index, constant) in constants.iter_mut().enumerate() {
            // K[i] = floor(|sin(i + 1)| * 2^32), as the RFC defines the table.
            let sine = f64::from(u32::try_from(index + 1).unwrap_or_default())
                .sin()
                .abs();
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "the value lies in [0, 2^32) by construction"
            )]
            {
                *constant = (sine * 4_294_967_296.0).floor() as u32;
            }
        }
        Self {
            state: [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476],
            pending: Vec::with_capacity(64),
            length: 0,
            constants,
        }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == 64 {
                let block: [u8; 64] = self.pending[..].try_into().unwrap_or([0; 64]);
                self.compress(&block);
                self.pending.clear();
            }
        }
        let mut chunks = data.chunks_exact(64);
        for chunk in &mut chunks {
            let block: [u8; 64] = chunk.try_into().unwrap_or([0; 64]);
            self.compress(&block);
        }
        self.pending.extend_from_slice(chunks.remainder());
    }

    /// The digest as lowercase hex.
    pub(crate) fn finish_hex(mut self) -> String {
        let bit_length = self.length.wrapping_mul(8);
        let mut padding = vec![0x80u8];
        let used = (self.pending.len() + 1) % 64;
        let zeros = if used <= 56 { 56 - used } else { 120 - used };
        padding.resize(1 + zeros, 0);
        padding.extend_from_slice(&bit_length.to_le_bytes());
        let length = self.length;
        self.update(&padding);
        self.length = length;
        let mut digest = Vec::with_capacity(16);
        for word in self.state {
            digest.extend_from_slice(&word.to_le_bytes());
        }
        hex::encode(digest)
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut words = [0u32; 16];
        for (word, bytes) in words.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        let [mut a, mut b, mut c, mut d] = self.state;
        for step in 0..64 {
            let round = step / 16;
            let (mix, index) = match round {
                0 => ((b & c) | (!b & d), step),
                1 => ((d & b) | (!d & c), (5 * step + 1) % 16),
                2 => (b ^ c ^ d, (3 * step + 5) % 16),
                _ => (c ^ (b | !d), (7 * step) % 16),
            };
            let rotated = a
                .wrapping_add(mix)
                .wrapping_add(self.constants[step])
                .wrapping_add(words[index])
                .rotate_left(SHIFTS[round][step % 4]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        self.state[0] = self.state[0].wrapping_add(a);
        self.state[1] = self.state[1].wrapping_add(b);
        self.state[2] = self.state[2].wrapping_add(c);
        self.state[3] = self.state[3].wrapping_add(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5(data: &[u8]) -> String {
        let mut hasher = Md5::new();
        hasher.update(data);
        hasher.finish_hex()
    }

    #[test]
    fn rfc_1321_vectors() {
        assert_eq!(md5(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5(b"The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
        assert_eq!(
            md5(b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn incremental_updates_match() {
        let data: Vec<u8> = (0..1000u32).map(|value| (value % 251) as u8).collect();
        let mut hasher = Md5::new();
        for piece in data.chunks(37) {
            hasher.update(piece);
        }
        assert_eq!(hasher.finish_hex(), md5(&data));
    }
}
