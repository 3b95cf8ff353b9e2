-- An integration's inventory data version: a new value of this sequence in every statement that
-- changes what ListInventory answers for it (stock rows, inventory warehouse and location names),
-- written in that same statement. The per-replica read cache (shared/readcache.py) sends the
-- version it holds with each read and gets rows back only if the version changed.
CREATE SEQUENCE inventory_version;
ALTER TABLE integrations
    ADD COLUMN inventory_version bigint NOT NULL DEFAULT nextval('inventory_version');
