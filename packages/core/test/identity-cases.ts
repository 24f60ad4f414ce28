import { beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { compiledUrl, compileFixture, type DecoratorMode } from './compile.js'

const run = promisify(execFile)

/**
 * The identity cases for one decorator mode. Each mode runs in its own test file (its own
 * process): the classes of the two modes differ, so in one process they would rightly conflict.
 */
export function identityCases(mode: DecoratorMode): void {
  describe(`@cache identity with ${mode} decorators`, () => {
    let load: (file: string) => Promise<any>
    beforeAll(() => {
      load = compileFixture('identity', mode)
    })

    it('names the class of `this`: subclasses of a generic base never share results', async () => {
      const { UserRepository, OrderRepository, backend } = await load('repositories.ts')
      const users = new UserRepository()
      const orders = new OrderRepository()
      expect(await users.findById('1')).toEqual({ table: 'users', id: '1' })
      expect(await orders.findById('1')).toEqual({ table: 'orders', id: '1' })
      expect(await orders.findById('1')).toEqual({ table: 'orders', id: '1' })
      expect(await users.findById('1')).toEqual({ table: 'users', id: '1' })
      // keyFor names the entry of a call on a given instance, and refuses to guess without one.
      expect(() => orders.findById.keyFor('1')).toThrow(/Repository.*keyFor\.call/s)
      const key = orders.findById.keyFor.call(orders, '1')
      expect(key).toMatch(/^memo:Repository\.findById#[0-9a-f]{12}\(OrderRepository#[0-9a-f]{12}\):"1"$/)
      expect(backend.rows.has(key)).toBe(true)
    })

    it('keeps two classes of one name in two modules apart: their methods differ, so do their keys', async () => {
      const auth = await load('auth/user-repository.ts')
      const billing = await load('billing/user-repository.ts')
      expect(await new auth.UserRepository().find('7')).toBe('auth user 7')
      expect(await new billing.UserRepository().find('7')).toBe('billing customer 7')
      expect(await new auth.UserRepository().find('7')).toBe('auth user 7')
    })

    it('keeps apart two classes of identical text whose modules differ (a module constant): the module text is in the key', async () => {
      const users = await load('tables/users.ts')
      const orders = await load('tables/orders.ts')
      expect(await new users.Repo().find(1)).toBe('users#1')
      expect(await new orders.Repo().find(1)).toBe('orders#1')
      expect(users.Repo.prototype.find.keyFor(1)).not.toBe(orders.Repo.prototype.find.keyFor(1))
    })

    it('does not fix a wrong key when clear() or keyFor() runs before the first instance', async () => {
      const { Users, Invoices, Named } = await load('before-instance.ts')
      await Users.prototype.get.clear()
      await Invoices.prototype.get.clear()
      if (mode === 'legacy') {
        // A legacy decorator is given the class.
        expect(Users.prototype.get.keyFor(1)).toMatch(/^memo:Users\.get#[0-9a-f]{12}:1$/)
      } else {
        // A TC39 method decorator is not: before an instance exists, an error, never a wrong key.
        expect(() => Users.prototype.get.keyFor(1)).toThrow(/`name`/)
      }
      expect(await new Users().get(1)).toBe('user 1')
      expect(await new Invoices().get(1)).toBe('invoice 1')
      expect(await new Invoices().get(1)).toBe('invoice 1')
      expect(Users.prototype.get.keyFor(1)).toMatch(/^memo:Users\.get#[0-9a-f]{12}:1$/)
      expect(Invoices.prototype.get.keyFor(1)).toMatch(/^memo:Invoices\.get#[0-9a-f]{12}:1$/)
      expect(Named.prototype.lookup.keyFor(1)).toBe('memo:named.lookup:1')
      await Users.prototype.get.invalidate(1)
      expect(await new Users().get(1)).toBe('user 1')
    })

    it('never lets two factory-made subclasses of one name share what a named base method stored for one of them', async () => {
      const { tenantRepository } = await load('tenant-repositories.ts')
      const Acme = tenantRepository({ 1: 'acme invoice' })
      const Globex = tenantRepository({ 1: 'globex invoice' })
      expect(await new Acme().find(1)).toBe('acme invoice')
      // The subclass part of the key is a default name (class name and text): the same for both.
      const globex = await new Globex().find(1).then(
        (value: unknown) => ({ value }),
        (error: { code?: string }) => ({ error }),
      )
      expect(globex).toEqual({ error: expect.objectContaining({ code: 'CACHE_CONFIG' }) })
      expect(await new Acme().find(1)).toBe('acme invoice')
    })

    it('keys a class a named method was copied onto (a mixin) apart, whichever class runs it first', async () => {
      const { Findable, backend } = await load('mixins/findable.ts')
      const users = await load('mixins/users.ts')
      // The copy runs first, before any Findable exists. Before (standard decorators): the copy's
      // class took the bare key `memo:mix.find:1`, which another process's Orders then read.
      expect(await new users.Repo().find(1)).toBe('users:1')
      const copy = new users.Repo()
      expect(copy.find.keyFor.call(copy, 1)).toMatch(/^memo:mix\.find\(Repo#[0-9a-f]{12}\):1$/)
      expect(await new Findable().find(1)).toBe('findable:1')
      const findable = new Findable()
      expect(findable.find.keyFor.call(findable, 1)).toBe('memo:mix.find:1')
      await new Promise((resolve) => setImmediate(resolve))
      expect(backend.rows.get('memo:mix.find:1')).toEqual(expect.objectContaining({ v: 'findable:1' }))
      // Two classes named Repo, of other text, each with the copy: their text is in their keys.
      // Before: one key for both (across processes), refused as a conflict in one.
      const invoices = await load('mixins/invoices.ts')
      expect(await new invoices.Repo().find(1)).toBe('invoices:1')
      expect(await new users.Repo().find(1)).toBe('users:1')
    })

    it('keys a class holding a mixin copy over a built-in class by the built-in it extends', async () => {
      const map = await load('mixins/builtin-map.ts')
      const set = await load('mixins/builtin-set.ts')
      // Two Stores of the same text, one over Map and one over Set: the built-in's name is in the key.
      const overMap = new map.Store()
      const overSet = new set.Store()
      expect(await overMap.find(1)).toBe('map:1')
      expect(await overSet.find(1)).toBe('set:1')
      expect(overMap.find.keyFor.call(overMap, 1)).not.toBe(overSet.find.keyFor.call(overSet, 1))
      expect(await new map.Store().find(1)).toBe('map:1')
    })

    it('keys a subclass of a class holding a mixin copy with the whole chain: two such chains never share', async () => {
      const users = await load('mixins/holder-users.ts')
      const orders = await load('mixins/holder-orders.ts')
      // Two Subs whose holders differ. Before: one key (the holder's text was in neither part), a
      // conflict in one process, orders read users' entry across two.
      expect(await new users.Sub().find(1)).toBe('users:1')
      expect(await new orders.Sub().find(1)).toBe('orders:1')
    })

    it('never takes a class that holds a copy of the method for the one that defines it', async () => {
      const { Admin, User } = await load('mixins/admin.ts')
      // The first instance is an Admin (its own copy besides the inherited one). Before (standard
      // decorators): Admin was taken for the defining class and got the bare key `memo:profile:1`.
      const admin = new Admin()
      expect(await admin.profile(1)).toBe('admins:1')
      expect(admin.profile.keyFor.call(admin, 1)).toMatch(/^memo:profile\(Admin#[0-9a-f]{12}\):1$/)
      const user = new User()
      expect(await user.profile(1)).toBe('users:1')
      expect(user.profile.keyFor.call(user, 1)).toBe('memo:profile:1')
    })

    it("never takes a subclass given the base class's decoration metadata for the decorated class", async () => {
      const { Repo, Users } = await load('copied-metadata.ts')
      const users = new Users()
      expect(await users.get(1)).toBe('users:1')
      // Before (standard decorators): Users counted as the decorated class, its own text left
      // out of its key: two deploys' Users (tables differing) shared it.
      expect(users.get.keyFor.call(users, 1)).toMatch(/^memo:Repo\.get#[0-9a-f]{12}\(Users#[0-9a-f]{12}\):1$/)
      const repo = new Repo()
      expect(repo.get.keyFor.call(repo, 1)).toMatch(/^memo:Repo\.get#[0-9a-f]{12}:1$/)
    })

    it("keys a subclass of a class a decorator replaced with a Proxy by the real classes' text", async () => {
      const { Repo } = await load('proxied.ts')
      const users = await load('proxied-users.ts')
      const orders = await load('proxied-orders.ts')
      // Before: the Proxy's text is unreadable, so both Admins had one key (a conflict here,
      // orders read users' entry across two processes).
      expect(await new users.Admins().get(1)).toBe('users:1')
      expect(await new orders.Admins().get(1)).toBe('orders:1')
      // A static method run on the Proxy, or on a bound copy of a class: refused, not keyed by a name.
      await expect(users.Users.describe()).rejects.toThrow(/cannot be read/)
      class Plain extends Repo {}
      await expect(Plain.bind(null).describe()).rejects.toThrow(/cannot be read/)
      expect(await Plain.describe()).toBe('table=repo')
    })

    it('refuses a class as the receiver of an instance method, and an instance as that of a static one', async () => {
      const { Pricing, Catalog, Handler, Tenant } = await load('receivers.ts')
      // Before: the class's result was stored under its instances' key, and served to them.
      await expect(Reflect.apply(Pricing.prototype.price, Pricing, ['sku1'])).rejects.toThrow(
        /price\(\) is an instance method.*called on the class Pricing/,
      )
      expect(await new Pricing().price('sku1')).toBe('sku1@eu')
      // Before: the instance's result was stored under the class's key.
      await expect(new Catalog().get('p1')).rejects.toThrow(
        /get\(\) is a static method.*called on an instance/,
      )
      expect(await Catalog.get('p1')).toBe('p1 from global-catalog')
      // Functions that are no class: an instance of a class extending Function, a bound function.
      // Before: keyed by their name alone ("anonymous", "bound Tenant"), shared across processes.
      await expect(Catalog.get.call(new Handler(), 'p1')).rejects.toThrow(/static method.*no class/)
      await expect(Catalog.get.call(Tenant.bind(null), 'p1')).rejects.toThrow(/static method.*no class/)
      // Another class given to the static method: keyed by that class (its name and text).
      const { Mirror, Legacy } = await load('receivers.ts')
      expect(await Catalog.get.call(Mirror, 'p1')).toBe('p1 from mirror-catalog')
      expect(await Catalog.get('p1')).toBe('p1 from global-catalog')
      expect(Catalog.get.keyFor.call(Mirror, 'p1')).not.toBe(Catalog.get.keyFor.call(Catalog, 'p1'))
      // Two static methods of one text in two classes, each given the same other class: each is
      // keyed by the class that defines it. Before: both `Mirror.quote`, Dollar's call got euros
      // (a conflict in one process).
      const { Euro, Dollar } = await load('receivers.ts')
      expect(await Reflect.apply(Euro.quote, Mirror, [1])).toBe('1 EUR')
      expect(await Reflect.apply(Dollar.quote, Mirror, [1])).toBe('1 USD')
      expect(Euro.quote.keyFor.call(Mirror, 1)).toMatch(/^memo:Euro\.quote#[0-9a-f]{12}\(Mirror#/)
      // A plain function is no class: refused.
      await expect(Catalog.get.call(Legacy, 'p1')).rejects.toThrow(/static method.*no class/)
    })

    it('keeps keys the same in every process: the same class and arguments give the same key', async () => {
      await load('repositories.ts') // compiled
      const keysOf = async () => {
        const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
          timeout: 10_000,
        })
        return JSON.parse(stdout) as string[]
      }
      const script = `
        const m = await import(${JSON.stringify(compiledUrl('identity', mode, 'repositories.ts'))})
        await new m.UserRepository().findById('1')
        console.log(JSON.stringify([...m.backend.rows.keys()]))`
      const [first, second] = await Promise.all([keysOf(), keysOf()])
      expect(
        first.some((key) =>
          /^memo:Repository\.findById#[0-9a-f]{12}\(UserRepository#[0-9a-f]{12}\):"1"$/.test(key),
        ),
      ).toBe(true)
      expect(second).toEqual(first)
    })
  })
}
