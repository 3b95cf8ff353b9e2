-- Tell every replica's ListInventory cache (shared/invalidation.py) which integration's
-- inventory changed, when the change commits: the integration id is the cache tag.
CREATE FUNCTION notify_inventory_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shipping_inventory_changed',
                      CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER integrations_inventory_changed
    AFTER DELETE OR UPDATE OF inventory_version ON integrations
    FOR EACH ROW EXECUTE FUNCTION notify_inventory_change();

-- TRUNCATE fires no row triggers: it tells the caches that everything may have changed.
CREATE FUNCTION notify_inventory_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shipping_inventory_changed', '*');
    RETURN NULL;
END
$$;

CREATE TRIGGER integrations_truncated AFTER TRUNCATE ON integrations
    FOR EACH STATEMENT EXECUTE FUNCTION notify_inventory_truncated();
