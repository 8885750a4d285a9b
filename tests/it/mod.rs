mod check;
mod dns;
mod lifecycle;
mod limits;
mod reload;
mod serving;
mod tenant_cli;
mod verify;
