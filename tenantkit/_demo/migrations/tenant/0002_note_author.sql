-- A second tenant migration, so the demo shows a migration history.
alter table notes add column author text not null default 'demo';
