-- Tell every replica's GetLatestPrices cache (shared/invalidation.py) which products changed,
-- when the change commits: the product id and its SKU (before and after), as cache tags.
CREATE FUNCTION notify_price_data_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('pricing_data_changed',
                          OLD.product_id || E'\tsku:' || upper(OLD.sku));
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('pricing_data_changed',
                          NEW.product_id || E'\tsku:' || upper(NEW.sku));
    ELSE
        PERFORM pg_notify('pricing_data_changed',
                          NEW.product_id || E'\tsku:' || upper(NEW.sku)
                          || E'\tsku:' || upper(OLD.sku));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER products_data_changed
    AFTER INSERT OR DELETE OR UPDATE OF data_version, sku ON products
    FOR EACH ROW EXECUTE FUNCTION notify_price_data_change();

-- TRUNCATE fires no row triggers: it tells the caches that everything may have changed.
CREATE FUNCTION notify_price_data_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pricing_data_changed', '*');
    RETURN NULL;
END
$$;

CREATE TRIGGER products_truncated AFTER TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION notify_price_data_truncated();
