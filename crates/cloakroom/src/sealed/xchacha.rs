//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha), built from HChaCha20 and the IETF
//! ChaCha20-Poly1305 of RFC 8439: the subkey is HChaCha20 of the key and the nonce's first
//! 16 bytes, and the 12-byte nonce is four zero bytes then the nonce's last 8.
//!
//! Why not the `chacha20poly1305` crate, which computes exactly this? A sealed session is
//! a few hundred bytes, and its Poly1305 picks a vector backend whose set-up and final
//! reduction cost more than the whole message: about 8,000 instructions to open or seal
//! one cookie, against about 2,000 here with ring's stitched ChaCha20-Poly1305. The output
//! is the same byte for byte (a test checks it against that crate), so every cookie
//! sealed before still opens.

use chacha20::cipher::consts::U10;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

/// The XChaCha20 nonce.
pub(super) const NONCE: usize = 24;
/// The Poly1305 tag.
pub(super) const TAG: usize = 16;

/// The ChaCha20-Poly1305 key and nonce for this XChaCha20 key and nonce.
fn derive(key: &[u8; 32], nonce: &[u8; NONCE]) -> (LessSafeKey, Nonce) {
    let (head, tail) = nonce.split_at(16);
    let subkey = chacha20::hchacha::<U10>(key.into(), head.into());
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(tail);
    let key = UnboundKey::new(&CHACHA20_POLY1305, &subkey)
        // A 32-byte key is the one length ChaCha20-Poly1305 takes.
        .expect("a ChaCha20-Poly1305 key is 32 bytes");
    (LessSafeKey::new(key), Nonce::assume_unique_for_key(short))
}

/// Encrypts `in_out` in place; returns the tag authenticating it and `aad`.
pub(super) fn seal(
    key: &[u8; 32],
    nonce: &[u8; NONCE],
    aad: &[u8],
    in_out: &mut [u8],
) -> [u8; TAG] {
    let (key, nonce) = derive(key, nonce);
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
        // ring refuses only inputs past ChaCha20's 256 GiB block counter.
        .expect("a cookie is far below ChaCha20-Poly1305's length limit");
    let mut out = [0; TAG];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Verifies `tag` over `in_out` and `aad`, then decrypts `in_out` in place. On `Err` the
/// contents of `in_out` are unspecified and must not be used.
pub(super) fn open(
    key: &[u8; 32],
    nonce: &[u8; NONCE],
    aad: &[u8],
    in_out: &mut [u8],
    tag: &[u8; TAG],
) -> Result<(), ()> {
    let (key, nonce) = derive(key, nonce);
    key.open_in_place_separate_tag(nonce, Aad::from(aad), Tag::from(*tag), in_out, 0..)
        .map(|_| ())
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use proptest::prelude::*;

    /// The test vector of draft-irtf-cfrg-xchacha-03, appendix A.3.1.
    #[test]
    fn matches_the_draft_test_vector() {
        let hex = |text: &str| {
            (0..text.len())
                .step_by(2)
                .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        };
        let key: [u8; 32] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
            .try_into()
            .unwrap();
        let nonce: [u8; NONCE] = hex("404142434445464748494a4b4c4d4e4f5051525354555657")
            .try_into()
            .unwrap();
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let mut buffer = plain.to_vec();
        let tag = seal(&key, &nonce, &aad, &mut buffer);
        assert_eq!(
            buffer,
            hex(
                "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb\
                 731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452\
                 2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9\
                 21f9664c97637da9768812f615c68b13b52e"
            )
        );
        assert_eq!(tag.to_vec(), hex("c0875924c1c7987947deafd8780acf49"));
        open(&key, &nonce, &aad, &mut buffer, &tag).unwrap();
        assert_eq!(&buffer[..], &plain[..]);
    }

    proptest! {
        /// Same bytes as the `chacha20poly1305` crate, both ways, and a flipped bit anywhere
        /// is refused.
        #[test]
        fn agrees_with_the_chacha20poly1305_crate(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; NONCE]>(),
            aad in prop::collection::vec(any::<u8>(), 0..40),
            plain in prop::collection::vec(any::<u8>(), 0..600),
            flip in any::<usize>(),
        ) {
            let theirs = XChaCha20Poly1305::new((&key).into());
            let mut expected = plain.clone();
            let expected_tag = theirs
                .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut expected)
                .unwrap();
            let mut ours = plain.clone();
            let tag = seal(&key, &nonce, &aad, &mut ours);
            prop_assert_eq!(&ours, &expected);
            prop_assert_eq!(&tag[..], &expected_tag[..]);

            let mut opened = ours.clone();
            prop_assert!(open(&key, &nonce, &aad, &mut opened, &tag).is_ok());
            prop_assert_eq!(&opened, &plain);

            let mut forged = ours.clone();
            let mut forged_tag = tag;
            let bit = flip % ((forged.len() + TAG) * 8);
            if bit / 8 < forged.len() {
                forged[bit / 8] ^= 1 << (bit % 8);
            } else {
                forged_tag[bit / 8 - forged.len()] ^= 1 << (bit % 8);
            }
            prop_assert!(open(&key, &nonce, &aad, &mut forged, &forged_tag).is_err());
        }
    }
}
