mod check;
mod lifecycle;
mod reload;
mod serving;
