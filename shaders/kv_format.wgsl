// The KV cache's element formats, shared by the kernels that write and read it
// (prepended to kv_store.wgsl, attention.wgsl and attention_probe.wgsl).
//
// A layer's cache holds one record per (KV head, position), of head_dim elements:
//  - f32: one element per u32 word;
//  - f16 (KV_F16): two per word;
//  - int8 (KV_I8): a word holding the record's f32 scale, then four elements per word
//    (byte b of word w is element 4w + b, two's complement); the value is scale * q.
// Element e of the cache is dimension e % head_dim of record e / head_dim, where the
// record of head h at position pos is h * capacity + pos.

override KV_F16: bool = false;
override KV_I8: bool = false;

// Words of one record.
fn kv_record_words(hd: u32) -> u32 {
    if KV_I8 {
        return hd / 4u + 1u;
    }
    return select(hd, hd / 2u, KV_F16);
}

// The word holding element e.
fn kv_word(e: u32, hd: u32) -> u32 {
    if KV_I8 {
        return (e / hd) * kv_record_words(hd) + 1u + (e % hd) / 4u;
    }
    return select(e, e / 2u, KV_F16);
}

// The word holding element e's scale (int8; otherwise e's own word, read for nothing).
fn kv_scale_word(e: u32, hd: u32) -> u32 {
    return select(kv_word(e, hd), (e / hd) * kv_record_words(hd), KV_I8);
}

// Element e's value, from its word and its scale word.
fn kv_decode(word: u32, scale_word: u32, e: u32) -> f32 {
    if KV_I8 {
        return f32(extractBits(bitcast<i32>(word), 8u * (e & 3u), 8u)) * bitcast<f32>(scale_word);
    }
    if KV_F16 {
        let pair = unpack2x16float(word);
        return select(pair.x, pair.y, (e & 1u) == 1u);
    }
    return bitcast<f32>(word);
}
