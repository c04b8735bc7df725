//! OWNER: instances helper.
// TEMPORARY stub on main until the instances branch lands.
pub fn chunk_instances(
    _c: &dyn crate::corpus::CorpusView,
    _d: std::ops::Range<usize>,
    _n: usize,
    _v: &super::MaskVocab,
) -> super::Chunks {
    unimplemented!()
}
