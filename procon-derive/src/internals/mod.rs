//! What every macro of this crate shares: error collection, attribute names, bookkeeping and
//! key readers, and name conversions.

pub(crate) mod attr;
pub(crate) mod case;
pub(crate) mod ctxt;
pub(crate) mod meta;
pub(crate) mod symbol;

pub(crate) use ctxt::Ctxt;
