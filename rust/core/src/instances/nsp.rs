//! OWNER: instances helper.
// TEMPORARY stub on main until the instances branch lands.
use super::{MaskVocab, NspConfig, NspInstances};
use crate::corpus::CorpusView;
pub fn nsp_instances(
    _c: &dyn CorpusView,
    _d: std::ops::Range<usize>,
    _p: u32,
    _cfg: &NspConfig,
    _v: &MaskVocab,
) -> NspInstances {
    unimplemented!()
}
